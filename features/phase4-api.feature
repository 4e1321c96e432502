@phase4 @gating
Feature: Phase 4 - API and ETL
  The API answers over HTTPS through Contour's HTTPProxy, the global rate limit
  (100 requests per second per remote address) refuses a burst above it and none
  below it, and every image the platform runs was scanned by Trivy in Harbor. The
  bursts are bounded and go only to the API's load balancer address.

  Background:
    Given the documented stack is applied

  @nightly
  Scenario: the API is reachable through Contour
    Then deployment "fastapi" in namespace "openalex" has 3 Ready replicas within 10 seconds
    And the API answers "/health" with status 200
    And the API answers "/works?per_page=1" with status 200

  # Alone: other scenarios' requests from the same address would share its windows.
  @serial @nightly
  Scenario: rate limiting is active
    Then 150 requests to "/health" within one second from one address get at least one 429
    And 50 requests to "/health" within one second from one address get no 429

  Scenario: images are scanned
    Then every image of namespace "openalex" has a vulnerability scan in Harbor
