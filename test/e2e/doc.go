// Package e2e holds black-box tests of the built vessel binary, driven with
// real clients (the aws CLI, the AWS SDK, kubectl) against a real server on
// a temporary data directory. TestMain builds vessel and vessel-guest first;
// under go test -short the whole package is skipped. Tests on the real
// runtimes need root; the sim runtime needs nothing.
//
// It imports Vessel's packages for their clients and helpers only (auth,
// awsclient, network, task, server/wiretest, test/k8senv), never the server
// or the agent: it drives the binary.
package e2e
