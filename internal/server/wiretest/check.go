package wiretest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options adjust a check for what the model alone cannot say.
type Options struct {
	// MayBeAbsent names top-level list or map members of the output that
	// AWS leaves out of this answer (e.g. "tags" of DescribeTaskDefinition
	// without include=TAGS). Every other top-level list or map must be
	// present, as [] or {} when empty.
	MayBeAbsent []string
	// Newer accepts members this model does not know, as "Shape.member"
	// mapped to why (they are in newer models of the service). Their values
	// are not checked against this model; check them against a newer model
	// where one is installed.
	Newer map[string]string
	// UnlistedErrors are exceptions AWS is known to answer this operation
	// with although the model does not list them for it (e.g. EKS's
	// CreateFargateProfile answers ResourceInUseException, 409, for a
	// duplicate name). They must still be exceptions of the model, and
	// their status is the model's.
	UnlistedErrors []string
	// MustBePresent are paths of lists and maps the answer must carry
	// wherever their parent is present, even empty (see Examples).
	MustBePresent []string
}

// CommonError is an error any AWS JSON service may answer with, whatever the
// operation's model lists.
type CommonError struct {
	Code     string
	Statuses []int // accepted HTTP statuses
}

// CommonErrors are the errors every operation may answer with, with the
// HTTP statuses AWS uses for them in the JSON protocols (AWS's "Common
// Errors" list; where services differ between 400 and 403 both are
// accepted).
var CommonErrors = []CommonError{
	{"AccessDeniedException", []int{400, 403}},
	{"ThrottlingException", []int{400, 429}},
	{"UnrecognizedClientException", []int{400, 403}},
	{"InvalidSignatureException", []int{400, 403}},
	{"IncompleteSignatureException", []int{400, 403}},
	{"MissingAuthenticationTokenException", []int{400, 403}},
	{"ExpiredTokenException", []int{400, 403}},
	{"InvalidClientTokenId", []int{403}},
	{"RequestExpired", []int{400}},
	{"ValidationException", []int{400}},
	{"SerializationException", []int{400}},
	{"UnknownOperationException", []int{400, 404}},
	{"RequestEntityTooLargeException", []int{413}},
	{"InternalFailure", []int{500}},
	{"ServiceUnavailable", []int{503}},
	{"ServiceUnavailableException", []int{503}},
}

// checker collects the problems of one answer.
type checker struct {
	m        *Model
	opts     Options
	problems []string
}

func (c *checker) addf(path, format string, args ...any) {
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, args...))
}

func (c *checker) err(what string) error {
	if len(c.problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s does not match the %s model:\n  %s", what, c.m.Metadata.ServiceID, strings.Join(c.problems, "\n  "))
}

func decode(body []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("the body is not JSON: %w (body %q)", err, body)
	}
	if d.More() {
		return nil, fmt.Errorf("the body holds more than one JSON value: %q", body)
	}
	return v, nil
}

// CheckOutput checks the body of a successful answer to op against the
// operation's output shape. It returns an error listing every problem, or
// one saying op is not in the model.
func (m *Model) CheckOutput(op string, body []byte, opts Options) error {
	o, err := m.Operation(op)
	if err != nil {
		return err
	}
	c := &checker{m: m, opts: opts}
	v, err := decode(body)
	if err != nil {
		return fmt.Errorf("%s output: %w", op, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s output: the body is %s, want a JSON object", op, kind(v))
	}
	if o.Output == nil {
		if len(obj) > 0 {
			c.addf("$", "the model gives %s no output, but the body has members %s", op, keys(obj))
		}
		return c.err(op + " output")
	}
	s := m.Shapes[o.Output.Shape]
	c.structure("$", o.Output.Shape, s, obj)
	for name, r := range s.Members {
		if r.Location != "" {
			continue
		}
		t := m.Shapes[r.Shape].Type
		if t != "list" && t != "map" {
			continue
		}
		if _, ok := obj[jsonName(name, r)]; !ok && !slices.Contains(opts.MayBeAbsent, name) {
			want := "[]"
			if t == "map" {
				want = "{}"
			}
			c.addf("$."+jsonName(name, r), "missing: AWS answers the %s %s of %s even when empty (%s)", t, name, op, want)
		}
	}
	for _, p := range opts.MustBePresent {
		c.checkPresent(obj, p)
	}
	return c.err(op + " output")
}

// jsonName is the body key of a member: its locationName where the model
// sets one, else its name.
func jsonName(name string, r *ShapeRef) string {
	if r.LocationName != "" && r.Location == "" {
		return r.LocationName
	}
	return name
}

func (c *checker) value(path, shapeName string, v any) {
	s := c.m.Shapes[shapeName]
	if v == nil {
		c.addf(path, "null: AWS leaves out a member that has no value (shape %s)", shapeName)
		return
	}
	switch s.Type {
	case "structure":
		obj, ok := v.(map[string]any)
		if !ok {
			c.addf(path, "is %s, want an object (structure %s)", kind(v), shapeName)
			return
		}
		c.structure(path, shapeName, s, obj)
	case "list":
		arr, ok := v.([]any)
		if !ok {
			c.addf(path, "is %s, want an array (list %s)", kind(v), shapeName)
			return
		}
		for i, e := range arr {
			c.value(fmt.Sprintf("%s[%d]", path, i), s.Member.Shape, e)
		}
	case "map":
		obj, ok := v.(map[string]any)
		if !ok {
			c.addf(path, "is %s, want an object (map %s)", kind(v), shapeName)
			return
		}
		for _, k := range sortedKeys(obj) {
			c.value(path+"{key "+k+"}", s.Key.Shape, k)
			c.value(path+"."+k, s.Value.Shape, obj[k])
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			c.addf(path, "is %s, want a string (%s)", kind(v), shapeName)
			return
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			c.addf(path, "%q is not a value of enum %s: accepted values are %s", str, shapeName, strings.Join(s.Enum, ", "))
		}
	case "integer", "long":
		n, ok := v.(json.Number)
		if !ok {
			c.addf(path, "is %s, want a JSON number (%s %s)", kind(v), s.Type, shapeName)
			return
		}
		i, err := n.Int64()
		if err != nil {
			c.addf(path, "%s is not a whole number (%s %s)", n, s.Type, shapeName)
			return
		}
		if s.Type == "integer" && (i < math.MinInt32 || i > math.MaxInt32) {
			c.addf(path, "%d is out of the 32-bit range of integer %s", i, shapeName)
		}
	case "double", "float":
		if _, ok := v.(json.Number); !ok {
			c.addf(path, "is %s, want a JSON number (%s %s)", kind(v), s.Type, shapeName)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			c.addf(path, "is %s, want true or false (boolean %s)", kind(v), shapeName)
		}
	case "blob":
		str, ok := v.(string)
		if !ok {
			c.addf(path, "is %s, want a base64 string (blob %s)", kind(v), shapeName)
		} else if _, err := base64.StdEncoding.DecodeString(str); err != nil {
			c.addf(path, "is not base64 (blob %s): %v", shapeName, err)
		}
	case "timestamp":
		c.timestamp(path, shapeName, s, v)
	}
}

// timestamp checks a timestamp in the shape's format, by default the JSON
// protocols' epoch seconds (a number, fraction allowed).
func (c *checker) timestamp(path, shapeName string, s *Shape, v any) {
	switch format := s.TimestampFormat; format {
	case "", "unixTimestamp":
		n, ok := v.(json.Number)
		if !ok {
			c.addf(path, "is %s, want epoch seconds as a JSON number (timestamp %s)", kind(v), shapeName)
			return
		}
		f, err := n.Float64()
		if err != nil || f < 0 || f > 1e11 {
			c.addf(path, "%s is not a plausible number of epoch seconds (timestamp %s)", n, shapeName)
		}
	case "iso8601":
		str, ok := v.(string)
		if _, err := time.Parse(time.RFC3339Nano, str); !ok || err != nil {
			c.addf(path, "is %v, want an ISO 8601 string (timestamp %s)", v, shapeName)
		}
	case "rfc822":
		str, ok := v.(string)
		if _, err := http.ParseTime(str); !ok || err != nil {
			c.addf(path, "is %v, want an RFC 822 date (timestamp %s)", v, shapeName)
		}
	default:
		c.addf(path, "timestamp %s has format %q, which the checker does not know", shapeName, format)
	}
}

func (c *checker) structure(path, shapeName string, s *Shape, obj map[string]any) {
	byJSON := map[string]string{}
	for name, r := range s.Members {
		if r.Location == "" {
			byJSON[jsonName(name, r)] = name
		}
	}
	for _, k := range sortedKeys(obj) {
		name, ok := byJSON[k]
		if !ok {
			if _, newer := c.opts.Newer[shapeName+"."+k]; !newer {
				c.addf(path+"."+k, "structure %s has no member %q (its members: %s)", shapeName, k, keys(byJSON))
			}
			continue
		}
		c.value(path+"."+k, s.Members[name].Shape, obj[k])
	}
	for _, req := range s.Required {
		r := s.Members[req]
		if r.Location != "" {
			continue
		}
		if _, ok := obj[jsonName(req, r)]; !ok {
			c.addf(path+"."+jsonName(req, r), "missing: structure %s requires it", shapeName)
		}
	}
}

// CheckError checks an error answer to op: the exception name (header
// X-Amzn-ErrorType and, in JSON 1.1, __type, which must agree), that it is
// one the operation's model names or a common one, its HTTP status, its
// Content-Type, a non-empty message, and the members of the body against the
// exception's shape. op "" accepts any exception of the model.
func (m *Model) CheckError(op string, status int, header http.Header, body []byte, opts Options) error {
	var o Operation
	if op == "" { // any operation: every exception of the model
		for _, name := range sortedKeys(m.Shapes) {
			if m.Shapes[name].Exception {
				o.Errors = append(o.Errors, ShapeRef{Shape: name})
			}
		}
		op = "any operation"
	} else {
		var err error
		if o, err = m.Operation(op); err != nil {
			return err
		}
	}
	c := &checker{m: m}
	code := header.Get("X-Amzn-ErrorType")
	if i := strings.IndexByte(code, ':'); i >= 0 { // "Code:http://..." as some services send
		code = code[:i]
	}
	v, err := decode(body)
	if err != nil {
		return fmt.Errorf("%s error: %w", op, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s error: the body is %s, want a JSON object", op, kind(v))
	}
	bodyType, hasType := obj["__type"].(string)
	if i := strings.LastIndexByte(bodyType, '#'); i >= 0 {
		bodyType = bodyType[i+1:]
	}
	switch {
	case m.Metadata.Protocol == "json" && !hasType:
		c.addf("$.__type", "missing: a JSON 1.1 error names its exception in __type")
	case hasType && code != "" && bodyType != code:
		c.addf("$.__type", "%q differs from the X-Amzn-ErrorType header %q", bodyType, code)
	}
	if code == "" {
		if m.Metadata.Protocol == "rest-json" {
			c.addf("X-Amzn-ErrorType", "missing: a REST-JSON error names its exception in this header")
		}
		code = bodyType
	}
	if status < 400 {
		c.addf("status", "HTTP %d is not an error status", status)
	}
	want := "application/json"
	if m.Metadata.Protocol == "json" {
		want = "application/x-amz-json-1.1"
	}
	if ct := header.Get("Content-Type"); ct != want {
		c.addf("Content-Type", "%q, want %q", ct, want)
	}
	if msg, ok := obj["message"].(string); !ok || strings.TrimSpace(msg) == "" {
		c.addf("$.message", "missing or empty: an error says what was wrong")
	}

	var shape *Shape
	for _, e := range o.Errors {
		if e.Shape == code {
			shape = m.Shapes[e.Shape]
		}
	}
	if s, ok := m.Shapes[code]; ok && s.Exception && slices.Contains(opts.UnlistedErrors, code) {
		shape = s
	}
	if shape != nil {
		wantStatus := 400
		switch {
		case shape.Error != nil && shape.Error.HTTPStatusCode != 0:
			wantStatus = shape.Error.HTTPStatusCode
		case shape.Fault:
			wantStatus = 500
		}
		if status != wantStatus {
			c.addf("status", "HTTP %d for %s, want %d", status, code, wantStatus)
		}
		for _, k := range sortedKeys(obj) {
			if k == "__type" || k == "message" || k == "Message" {
				continue
			}
			r, ok := shape.Members[k]
			if !ok {
				c.addf("$."+k, "exception %s has no member %q", code, k)
				continue
			}
			c.value("$."+k, r.Shape, obj[k])
		}
	} else {
		ci := slices.IndexFunc(CommonErrors, func(ce CommonError) bool { return ce.Code == code })
		if ci < 0 {
			names := make([]string, 0, len(o.Errors))
			for _, e := range o.Errors {
				names = append(names, e.Shape)
			}
			c.addf("type", "%q is neither an error of %s (%s) nor a common AWS error", code, op, strings.Join(names, ", "))
		} else if s, ok := m.Shapes[code]; ok && s.Exception && s.Error != nil && s.Error.HTTPStatusCode != 0 {
			// A common error the service models itself: its status wins.
			if status != s.Error.HTTPStatusCode {
				c.addf("status", "HTTP %d for %s, want %d as the model's shape says", status, code, s.Error.HTTPStatusCode)
			}
		} else if !slices.Contains(CommonErrors[ci].Statuses, status) {
			c.addf("status", "HTTP %d for %s, want one of %v", status, code, CommonErrors[ci].Statuses)
		}
	}
	return c.err(op + " error " + code)
}

// CheckEnum reports whether value is one of the enum shape's values.
func (m *Model) CheckEnum(shape, value string) error {
	s, ok := m.Shapes[shape]
	if !ok {
		return fmt.Errorf("shape %q is not in the %s model", shape, m.Metadata.ServiceID)
	}
	if !slices.Contains(s.Enum, value) {
		return fmt.Errorf("%q is not a value of enum %s: accepted values are %s", value, shape, strings.Join(s.Enum, ", "))
	}
	return nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keys[V any](m map[string]V) string {
	return strings.Join(sortedKeys(m), ", ")
}

// errNoCLI is returned by FindModel when no aws CLI is installed.
var errNoCLI = errors.New("no aws CLI")
