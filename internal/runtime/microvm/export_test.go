package microvm

// afterTests run once every test of the binary has run (TestMain).
var afterTests []func()

// AfterTests has f run once every test of the binary has run: for what
// tests share, such as the guest binary they build once.
func AfterTests(f func()) { afterTests = append(afterTests, f) }

// SetClaimCrash makes Claim stop at step ("committing", "committed") as
// if the process had died there, until the returned function is called.
func SetClaimCrash(step string) (reset func()) {
	claimCrash = step
	return func() { claimCrash = "" }
}
