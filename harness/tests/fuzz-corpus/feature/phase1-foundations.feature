@phase1 @gating @nightly
Feature: Phase 1 - foundations
  The seed's first phase validates the base the rest stands on: the cluster is
  healthy, storage is provisioned, HTTPS works. Thresholds named "the profile's X"
  come from the acceptance profile (fixtures/acceptance/, --profile).

  Background:
    Given the documented stack is applied

  Scenario: the cluster is healthy
    Then every node is Ready
    And every pod in namespace "kube-system" is Ready
    And a pod in namespace "openalex" resolves "fastapi.openalex.svc.cluster.local"

  Scenario: Ceph is healthy
    Then the Ceph cluster reports HEALTH_OK
    And every OSD is up and in
    And every placement group is active+clean
    And the CephCluster "rook-ceph" in namespace "rook-ceph" reports HEALTH_OK

  Scenario: the pools are replicated as documented
    Then pool "nvme-pool" is replicated 2 times on device class "nvme"
    And pool "hdd-pool" is replicated 3 times on device class "hdd"

  Scenario: a claim on each storage class binds and is cleaned up
    Then a 1Gi claim on storage class "ceph-nvme" is bound within the profile's storage.claim_bind_s and cleaned up within the profile's storage.claim_cleanup_s
    And a 1Gi claim on storage class "ceph-hdd" is bound within the profile's storage.claim_bind_s and cleaned up within the profile's storage.claim_cleanup_s

  Scenario: HTTPS is functional
    Then the ClusterIssuer "letsencrypt-prod" is Ready
    And the Certificate "openalex-api-tls" in namespace "openalex" is Ready
    And a TLS handshake with the API host succeeds with a certificate for that name
