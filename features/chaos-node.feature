@chaos @nightly
Feature: A worker loses power
  Losing a worker takes an API replica and that node's Ceph OSDs with it. The API keeps
  serving from the other replicas as long as the database survives; PostgreSQL runs one
  replica, so losing its node stops the API until the node is back (a StatefulSet pod is
  not replaced while its node is unreachable): both cases are drilled. Two OSDs go with
  the node; Ceph must warn, never reach HEALTH_ERR (pools of size 2 and 3 on three hosts).

  Scenario: the API survives the loss of a worker that does not run the database
    Given the documented stack is deployed
    And the API receives 20 requests per second
    And the system is in steady state
    When a worker without pod "postgresql-0" in namespace "openalex" loses power
    Then while degraded the API error rate stays under the profile's chaos.node.error_rate_during_pct
    And while degraded the API p99 latency stays under the profile's chaos.node.p99_during_ms
    When the harness waits 5 seconds
    And the node that lost power regains power
    Then the system recovers within the profile's chaos.node.recovery_s
    And deployment "fastapi" in namespace "openalex" has 3 Ready replicas within 60 seconds
    And every node is Ready
    And Ceph never reported HEALTH_ERR during the scenario

  Scenario: everything returns after the database's node is back
    Given the documented stack is deployed
    And the API receives 20 requests per second
    And the system is in steady state
    When the node of pod "postgresql-0" in namespace "openalex" loses power
    And the harness waits 5 seconds
    And the node that lost power regains power
    Then the system recovers within the profile's chaos.node.recovery_s
    And statefulset "postgresql" in namespace "openalex" has 1 Ready replicas within 60 seconds
    And Ceph reports HEALTH_OK and every placement group is active+clean within the profile's chaos.osd.recovery_s
    And every node is Ready
    And Ceph never reported HEALTH_ERR during the scenario
