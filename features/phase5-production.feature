@phase5 @gating
Feature: Phase 5 - production
  GitOps keeps the cluster in step with Git, Velero takes the documented daily
  backups, Gatekeeper refuses images without an explicit tag, and metrics older
  than Prometheus keeps are still answered through Thanos.

  Background:
    Given the documented stack is applied

  Scenario: GitOps is functional
    Then every Flux Kustomization is Ready and not suspended

  Scenario: backups are taken daily
    Then the backup storage location "default" in namespace "velero" is Available
    And the Velero schedule "daily-openalex" is configured as:
      | schedule        | 0 2 * * *           |
      | namespaces      | openalex, rook-ceph |
      | snapshotVolumes | true                |
      | ttl             | 168h                |
    And the newest backup of the Velero schedule "daily-openalex" is Completed and at most 26 hours old

  Scenario: policies are applied
    Then a pod with image "nginx" is denied in namespace "openalex"
    And a pod with image "nginx:1.27" is admitted in namespace "openalex"

  Scenario: historical metrics are kept
    Then Thanos returns "up" data older than Prometheus's retention
