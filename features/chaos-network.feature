@chaos @nightly
Feature: The database cut off from the network
  A NetworkPolicy denying all traffic to PostgreSQL cuts the API off its data; removing
  it must bring the API back by itself, without a restart.

  Scenario: the API recovers once the database is reachable again
    Given the documented stack is deployed
    And the API receives 20 requests per second
    And the system is in steady state
    When the pods of "app=postgresql" in namespace "openalex" are isolated from the network
    And the harness waits 3 seconds
    And the pods of "app=postgresql" in namespace "openalex" are reconnected to the network
    Then the system recovers within the profile's chaos.network.recovery_s
