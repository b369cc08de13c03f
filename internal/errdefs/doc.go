// Package errdefs defines the small set of error kinds that Vessel's packages
// return, so that callers can tell them apart with errors.Is and only the API
// layer turns them into wire errors (ECS ClientException, EKS
// ResourceNotFoundException, ...).
//
// Packages wrap a kind with context using fmt.Errorf("...: %w", ErrNotFound)
// or the helpers below; messages say what was wrong with the input and what
// would be accepted.
//
// This package imports nothing of Vessel's.
package errdefs
