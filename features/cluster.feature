@phase1 @smoke @nightly
Feature: The cluster is reachable and healthy
  The first look at any target, before anything is deployed or broken: the API
  server answers, nodes and the control plane are Ready, and the core objects exist.

  Scenario: the cluster is reachable
    Given the cluster is reachable

  Scenario: every node is Ready
    Given the cluster is reachable
    Then every node is Ready

  Scenario: the control plane pods are Ready
    Given the cluster is reachable
    Then every pod in namespace "kube-system" is Ready

  Scenario: the core namespaces exist
    Given the cluster is reachable
    Then the namespace "default" exists
    And the namespace "kube-system" exists
    And the namespace "kube-public" exists
    And the cluster-scoped namespace "kube-node-lease" exists

  Scenario: cluster DNS is served
    Given the cluster is reachable
    Then the service "kube-dns" exists in namespace "kube-system"
