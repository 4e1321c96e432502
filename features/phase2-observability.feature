@phase2 @gating @nightly
Feature: Phase 2 - observability
  Metrics are collected from every documented exporter and kept 15 days, logs of
  every namespace reach Loki and are kept 30 days, and the documented dashboards
  are in Grafana. Prometheus, Loki and Grafana are read through the API server's
  service proxy.

  Background:
    Given the documented stack is applied

  Scenario: metrics are collected
    Then every Prometheus target of these jobs is up:
      | kube-state-metrics |
      | node-exporter      |
      | rook-ceph-mgr      |
      | postgresql         |
      | elasticsearch      |
    And Prometheus's retention is the profile's observability.prometheus_retention_d

  Scenario: logs are centralised
    Then Loki has log lines younger than the profile's observability.log_window_s from every namespace of:
      | openalex          |
      | monitoring        |
      | rook-ceph         |
      | velero            |
      | projectcontour    |
      | cert-manager      |
      | flux-system       |
      | gatekeeper-system |
      | harbor            |
    And Loki's retention is the profile's observability.loki_retention_d

  Scenario: dashboards are accessible
    Then Grafana has these dashboards:
      | Kubernetes cluster |
      | Ceph cluster       |
      | PostgreSQL         |
      | Elasticsearch      |
      | Node Exporter Full |
