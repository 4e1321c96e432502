@dr @nightly
Feature: Disaster recovery with Velero
  The platform's data survives the loss of the openalex namespace: Velero backs it up
  (objects and volume contents) to the Ceph object store, and a restore brings back
  the API and its databases. Markers written to PostgreSQL during the drill measure
  what was lost (RPO: the disaster minus the newest marker present after the
  restore), and the API's return measures the recovery time (RTO). The drill's
  parameters are in scenarios/velero-dr.yaml, its limits in the acceptance profile
  (dr.*); its records go to reports/<run>/dr-velero-dr/.

  @destructive
  Scenario: the openalex namespace is restored from a Velero backup
    Given the documented stack is deployed
    And the drill scenario "scenarios/velero-dr.yaml"
    And markers are being written every 1 second
    When a Velero backup of the drill's namespaces completes
    And the drill's namespaces are deleted
    And the drill's backup is restored
    Then the API serves correct data again within the profile's dr.rto_s
    And the backup completes within the profile's dr.backup_s
    And the restore completes within the profile's dr.restore_s
    And the RTO is at most the profile's dr.rto_s
    And the RPO is at most the profile's dr.rpo_s
    And no data written before the backup is lost

  Scenario: daily backups are scheduled as documented
    Given the documented stack is deployed
    Then the Velero schedule "daily-openalex" is configured as:
      | schedule        | 0 2 * * *           |
      | namespaces      | openalex, rook-ceph |
      | snapshotVolumes | true                |
      | ttl             | 168h                |
    And the newest backup of the Velero schedule "daily-openalex" is Completed and at most the profile's backup.max_age_h old
