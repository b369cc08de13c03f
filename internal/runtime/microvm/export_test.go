package microvm

// afterTests run once every test of the binary has run (TestMain).
var afterTests []func()

// AfterTests has f run once every test of the binary has run: for what
// tests share, such as the guest binary they build once.
func AfterTests(f func()) { afterTests = append(afterTests, f) }
