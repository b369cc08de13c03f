// Package awsjson serves AWS APIs of the JSON 1.1 protocol (POST / with
// X-Amz-Target <prefix>.<Operation>) from typed Go functions: it decodes
// a request into the operation's input, encodes its output, and writes
// errors in the protocol's shape ({"__type", "message"} and
// X-Amzn-ErrorType) under the exception name each API gives them.
//
// It imports errdefs only. The APIs served inside the control plane
// (internal/secrets, internal/cwlogs) use it after internal/server has
// verified and authorised the request.
//
// Usage:
//
//	ops := map[string]awsjson.Operation{"GetThing": awsjson.Op(svc.GetThing)}
//	awsjson.Dispatch(w, r, name, ops, func(err error) {
//		awsjson.WriteError(w, log, http.StatusBadRequest, awsjson.Code(err), err)
//	})
package awsjson
