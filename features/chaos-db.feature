@chaos @nightly
Feature: Losing the database
  Without PostgreSQL the API cannot answer; once the database is back the API must
  recover by itself, without a restart of its pods.

  Scenario: the API recovers after the database comes back
    Given the documented stack is deployed
    And the API receives 20 requests per second
    And the system is in steady state
    When the database "postgresql" in namespace "openalex" is unavailable
    And the harness waits 3 seconds
    And the database "postgresql" in namespace "openalex" is available again
    Then the system recovers within the profile's chaos.db.recovery_s
    And statefulset "postgresql" in namespace "openalex" has 1 Ready replicas within 60 seconds
