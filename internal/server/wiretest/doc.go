// Package wiretest checks Vessel's ECS and EKS answers against the AWS
// service models that ship with the aws CLI (botocore's service-2.json), so
// that an answer is held to what AWS itself documents rather than to what
// the SDK happens to tolerate.
//
// It walks the model's shapes generically: every member of an answer is
// checked for its type (string, enum, integer, long, double, boolean,
// timestamp as epoch seconds, list, map, structure), required members,
// known enum values and members the model does not know; the top-level
// lists and maps of an output must be present ([] or {} when empty), as AWS
// sends them, and so must every list or map that the example answers the
// aws CLI ships (awscli/examples/<service>/*.rst, read by Examples) show
// empty. An error answer is checked for its exception name (the
// X-Amzn-ErrorType header and, for JSON 1.1, __type), for being one the
// operation's model names or one of the errors every AWS service may
// return, and for its HTTP status.
//
// It imports nothing of Vessel: it is a test helper for internal/server's
// tests and test/e2e. FindModel locates a model from an installed aws CLI.
//
//	m, err := wiretest.Load(path)              // service-2.json or .json.gz
//	models, note, err := wiretest.Installed("ecs") // aws CLI v2's model, and v1's if installed
//	ex, err := wiretest.Examples(wiretest.CLIv2, "ecs", models[0])
//	err = m.CheckOutput("ListTasks", body, wiretest.Options{MustBePresent: ex["ListTasks"]})
//	err = m.CheckError("ListTasks", status, header, body, wiretest.Options{})
package wiretest
