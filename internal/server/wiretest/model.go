package wiretest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Model is one service's botocore model (service-2.json).
type Model struct {
	// Path is the file the model was read from.
	Path       string
	Metadata   Metadata             `json:"metadata"`
	Operations map[string]Operation `json:"operations"`
	Shapes     map[string]*Shape    `json:"shapes"`
}

// Metadata is the part of the model's metadata the checks use.
type Metadata struct {
	APIVersion   string `json:"apiVersion"`
	Protocol     string `json:"protocol"` // json, rest-json
	ServiceID    string `json:"serviceId"`
	TargetPrefix string `json:"targetPrefix"`
}

// Operation is one operation of the model.
type Operation struct {
	Name   string    `json:"name"`
	HTTP   HTTP      `json:"http"`
	Input  *ShapeRef `json:"input"`
	Output *ShapeRef `json:"output"`
	Errors []ShapeRef
}

// UnmarshalJSON reads an operation; errors are a list of shape references.
func (o *Operation) UnmarshalJSON(b []byte) error {
	type plain Operation
	var aux struct {
		plain
		Errors []ShapeRef `json:"errors"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*o = Operation(aux.plain)
	o.Errors = aux.Errors
	return nil
}

// HTTP is an operation's method and path.
type HTTP struct {
	Method       string `json:"method"`
	RequestURI   string `json:"requestUri"`
	ResponseCode int    `json:"responseCode"`
}

// ShapeRef refers to a shape, as a member or an operation's input/output.
type ShapeRef struct {
	Shape         string `json:"shape"`
	Location      string `json:"location"`     // header, headers, uri, querystring, statusCode; "" = body
	LocationName  string `json:"locationName"` // the JSON key of a body member in rest-json, when set
	Documentation string `json:"documentation"`
}

// Shape is one shape of the model.
type Shape struct {
	Type            string               `json:"type"`
	Members         map[string]*ShapeRef `json:"members"`
	Required        []string             `json:"required"`
	Member          *ShapeRef            `json:"member"`
	Key             *ShapeRef            `json:"key"`
	Value           *ShapeRef            `json:"value"`
	Enum            []string             `json:"enum"`
	TimestampFormat string               `json:"timestampFormat"`
	Exception       bool                 `json:"exception"`
	Fault           bool                 `json:"fault"`
	Error           *struct {
		Code           string `json:"code"`
		HTTPStatusCode int    `json:"httpStatusCode"`
		SenderFault    bool   `json:"senderFault"`
	} `json:"error"`
}

// Load reads a botocore model, plain or gzip-compressed, and checks that
// every shape it refers to exists, so that a broken model fails here and not
// as a puzzling check later.
func Load(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the service model: %w", err)
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("service model %s: %w", path, err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("service model %s: %w", path, err)
		}
	}
	return Parse(path, data)
}

// Parse reads a model from its JSON text; name says where it came from.
func Parse(name string, data []byte) (*Model, error) {
	m := &Model{Path: name}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("service model %s is not a botocore model: %w", name, err)
	}
	if len(m.Operations) == 0 || len(m.Shapes) == 0 {
		return nil, fmt.Errorf("service model %s is malformed: it has %d operations and %d shapes, want some of each", name, len(m.Operations), len(m.Shapes))
	}
	switch m.Metadata.Protocol {
	case "json", "rest-json":
	default:
		return nil, fmt.Errorf("service model %s: protocol %q is not checked here: accepted protocols are json and rest-json", name, m.Metadata.Protocol)
	}
	var problems []string
	ref := func(where string, r *ShapeRef) {
		if r == nil {
			return
		}
		if _, ok := m.Shapes[r.Shape]; !ok {
			problems = append(problems, fmt.Sprintf("%s refers to shape %q, which the model does not define", where, r.Shape))
		}
	}
	for name, op := range m.Operations {
		ref("operation "+name+" input", op.Input)
		ref("operation "+name+" output", op.Output)
		for i := range op.Errors {
			ref("operation "+name+" error", &op.Errors[i])
		}
	}
	for name, s := range m.Shapes {
		switch s.Type {
		case "structure":
			for mn, r := range s.Members {
				ref("shape "+name+" member "+mn, r)
			}
			for _, req := range s.Required {
				if _, ok := s.Members[req]; !ok {
					problems = append(problems, fmt.Sprintf("shape %s requires member %q, which it does not have", name, req))
				}
			}
		case "list":
			if s.Member == nil {
				problems = append(problems, "list shape "+name+" has no member")
			}
			ref("list "+name, s.Member)
		case "map":
			if s.Key == nil || s.Value == nil {
				problems = append(problems, "map shape "+name+" lacks its key or value")
			}
			ref("map "+name+" key", s.Key)
			ref("map "+name+" value", s.Value)
		case "string", "integer", "long", "boolean", "timestamp", "double", "float", "blob":
		default:
			problems = append(problems, fmt.Sprintf("shape %s has type %q, which the checker does not know", name, s.Type))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("service model %s is malformed:\n  %s", name, strings.Join(problems, "\n  "))
	}
	return m, nil
}

// Operation returns the named operation, or an error that lists the model's
// operations when it has no such one.
func (m *Model) Operation(name string) (Operation, error) {
	op, ok := m.Operations[name]
	if !ok {
		names := make([]string, 0, len(m.Operations))
		for n := range m.Operations {
			names = append(names, n)
		}
		sort.Strings(names)
		return Operation{}, fmt.Errorf("operation %q is not in the %s %s model (%s); its operations are: %s",
			name, m.Metadata.ServiceID, m.Metadata.APIVersion, m.Path, strings.Join(names, ", "))
	}
	return op, nil
}

func (m *Model) String() string {
	return m.Metadata.ServiceID + " " + m.Metadata.APIVersion + " (" + m.Path + ")"
}
