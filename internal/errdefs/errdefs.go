package errdefs

import (
	"errors"
	"fmt"
)

// The kinds. Compare with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrAlreadyExists   = errors.New("already exists")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrConflict        = errors.New("conflict")
	ErrUnavailable     = errors.New("unavailable")
	ErrLimitExceeded   = errors.New("limit exceeded")
	// ErrPermissionDenied: the caller's key does not allow the action.
	ErrPermissionDenied = errors.New("permission denied")
)

// kindError carries a message and a kind; Error returns the message alone so
// that wire errors read naturally.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func newf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// NotFound returns an error of kind ErrNotFound with the formatted message.
func NotFound(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// AlreadyExists returns an error of kind ErrAlreadyExists with the formatted message.
func AlreadyExists(format string, args ...any) error {
	return newf(ErrAlreadyExists, format, args...)
}

// InvalidArgument returns an error of kind ErrInvalidArgument with the formatted message.
func InvalidArgument(format string, args ...any) error {
	return newf(ErrInvalidArgument, format, args...)
}

// Conflict returns an error of kind ErrConflict with the formatted message.
func Conflict(format string, args ...any) error { return newf(ErrConflict, format, args...) }

// Unavailable returns an error of kind ErrUnavailable with the formatted message.
func Unavailable(format string, args ...any) error { return newf(ErrUnavailable, format, args...) }

// LimitExceeded returns an error of kind ErrLimitExceeded with the formatted message.
func LimitExceeded(format string, args ...any) error {
	return newf(ErrLimitExceeded, format, args...)
}

// PermissionDenied returns an error of kind ErrPermissionDenied with the formatted message.
func PermissionDenied(format string, args ...any) error {
	return newf(ErrPermissionDenied, format, args...)
}

// IsPermissionDenied reports whether err is of kind ErrPermissionDenied.
func IsPermissionDenied(err error) bool { return errors.Is(err, ErrPermissionDenied) }

// IsNotFound reports whether err is of kind ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsAlreadyExists reports whether err is of kind ErrAlreadyExists.
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsInvalidArgument reports whether err is of kind ErrInvalidArgument.
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }

// IsConflict reports whether err is of kind ErrConflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsUnavailable reports whether err is of kind ErrUnavailable.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
