@phase3 @gating @nightly
Feature: Phase 3 - databases
  The databases run on volumes Rook provisioned, a drain cannot take the single
  PostgreSQL replica down, their exporters are scraped and their logs reach Loki.

  Background:
    Given the documented stack is applied

  Scenario: the databases run on volumes provisioned by Rook
    Then statefulset "postgresql" in namespace "openalex" has 1 Ready replica within 60 seconds
    And statefulset "neo4j" in namespace "openalex" has 1 Ready replica within 60 seconds
    And statefulset "elasticsearch" in namespace "openalex" has 3 Ready replicas within 60 seconds
    And statefulset "influxdb" in namespace "openalex" has 1 Ready replica within 60 seconds
    And statefulset "redis" in namespace "openalex" has 3 Ready replicas within 60 seconds
    And every PVC in namespace "openalex" is Bound on a Rook storage class

  # PostgreSQL runs one replica: its PodDisruptionBudget (maxUnavailable 0) must make
  # a node drain wait instead of stopping the database. A dry run evicts nothing.
  Scenario: a node drain cannot evict the database
    Then pod "postgresql-0" in namespace "openalex" cannot be evicted

  Scenario: the database exporters are scraped
    Then every Prometheus target of these jobs is up:
      | postgresql    |
      | elasticsearch |

  Scenario: the database logs are collected
    Then Loki has log lines younger than the profile's observability.log_window_s from the pods of these statefulsets in namespace "openalex":
      | postgresql    |
      | neo4j         |
      | elasticsearch |
      | influxdb      |
      | redis         |
