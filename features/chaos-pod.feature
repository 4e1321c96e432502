@chaos @nightly
Feature: Losing API pods
  The API runs 3 replicas behind a PodDisruptionBudget: a killed pod is replaced and
  the Deployment is back to full strength quickly.

  Scenario: a killed API pod is replaced
    Given the documented stack is deployed
    When 1 pod of deployment "fastapi" is killed
    Then deployment "fastapi" in namespace "openalex" has 3 Ready replicas within 30 seconds
