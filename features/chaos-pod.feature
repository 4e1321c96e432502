@chaos @nightly
Feature: Losing API pods
  The API runs 3 replicas behind a PodDisruptionBudget: a killed pod is replaced and
  the Deployment is back to full strength quickly, while clients barely notice.

  Scenario: a killed API pod is replaced
    Given the documented stack is deployed
    When 1 pod of deployment "fastapi" is killed
    Then deployment "fastapi" in namespace "openalex" has 3 Ready replicas within 30 seconds

  Scenario: the API keeps serving while one of its pods is killed under load
    Given the documented stack is deployed
    And the API receives 50 requests per second
    And the system is in steady state
    When 1 pod of deployment "fastapi" in namespace "openalex" is killed
    Then while degraded the API error rate stays under the profile's chaos.pod.error_rate_during_pct
    And while degraded the API p99 latency stays under the profile's chaos.pod.p99_during_ms
    And the system recovers within the profile's chaos.pod.recovery_s
    And deployment "fastapi" in namespace "openalex" has 3 Ready replicas within 30 seconds
