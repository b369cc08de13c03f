// Package e2e holds black-box tests of the built vessel binary, driven with
// real clients (the aws CLI) against a real server on a temporary data
// directory. They need root for the real runtimes; the sim runtime needs
// nothing.
package e2e
