@chaos @nightly @ceph
Feature: Losing one Ceph OSD
  nvme-pool keeps 2 replicas and hdd-pool 3: with one OSD down their placement groups
  are degraded but stay active, so the API keeps serving; Ceph notices within the
  heartbeat grace, and when the OSD returns it heals to HEALTH_OK with every PG
  active+clean (a real cluster reports HEALTH_OK while PGs still peer: both are needed).

  Scenario: the API keeps serving while an OSD is down
    Given the documented stack is deployed
    And the API receives 20 requests per second
    And the system is in steady state
    When OSD 0 goes down
    Then Ceph reports HEALTH_WARN within the profile's chaos.osd.detection_s
    And while degraded the API error rate stays under the profile's chaos.osd.error_rate_during_pct
    And while degraded the API p99 latency stays under the profile's chaos.osd.p99_during_ms
    When OSD 0 comes back
    Then Ceph reports HEALTH_OK and every placement group is active+clean within the profile's chaos.osd.recovery_s
    And the system recovers within the profile's chaos.osd.recovery_s

  # The noout flag warns by itself (OSDMAP_FLAGS): the OSD map, not HEALTH_WARN, shows
  # that Ceph saw the OSD go down.
  Scenario: maintenance with noout keeps the data in place
    Given the documented stack is deployed
    When the noout flag is set
    And OSD 1 goes down
    Then Ceph marks OSD 1 down within the profile's chaos.osd.detection_s
    When OSD 1 comes back
    And the noout flag is unset
    Then Ceph reports HEALTH_OK and every placement group is active+clean within the profile's chaos.osd.recovery_s
    And every OSD is up and in

  # Out with the OSD still up moves data (misplaced, remapped) without degrading it:
  # Ceph stays HEALTH_OK throughout (ceph-lab.md §5), so the checks are the API's.
  Scenario: an OSD marked out and back in moves data without hurting the API
    Given the documented stack is deployed
    And the API receives 20 requests per second
    And the system is in steady state
    When OSD 2 is marked out
    Then while degraded the API error rate stays under the profile's chaos.osd.error_rate_during_pct
    When the harness waits 3 seconds
    And OSD 2 is marked in
    Then Ceph reports HEALTH_OK and every placement group is active+clean within the profile's chaos.osd.recovery_s
    And every OSD is up and in
    And the system recovers within the profile's chaos.osd.recovery_s

  # Past mon_osd_down_out_interval Ceph gives up on a dead OSD, marks it out and
  # re-replicates its data on the others: the cluster is whole again without it. An
  # NVMe OSD: nvme-pool (size 2) still has two hosts with NVMe, where hdd-pool (size 3)
  # would be left with two hosts for three copies.
  Scenario: the data of a dead OSD is re-replicated on the others
    Given the documented stack is deployed
    When OSD 0 goes down
    Then Ceph marks OSD 0 out within the profile's chaos.osd.out_s
    And Ceph reports HEALTH_OK and every placement group is active+clean within the profile's chaos.osd.rereplication_s
    When OSD 0 comes back
    Then every OSD is up and in within the profile's chaos.osd.recovery_s
    And Ceph reports HEALTH_OK and every placement group is active+clean within the profile's chaos.osd.recovery_s
