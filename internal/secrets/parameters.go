package secrets

import (
	"context"
	"encoding/base64"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store"
	"vessel.dev/vessel/internal/store/jsonrec"
)

// SSM Parameter Store's exception names.
const (
	CodeParameterNotFound        = "ParameterNotFound"
	CodeParameterAlreadyExists   = "ParameterAlreadyExists"
	CodeParameterVersionNotFound = "ParameterVersionNotFound"
	CodeValidation               = "ValidationException"
	CodeSSMInvalidNextToken      = "InvalidNextToken"
	CodeUnsupportedParameterType = "UnsupportedParameterType"
	CodeHierarchyLevelLimit      = "HierarchyLevelLimitExceededException"
	CodeInvalidFilterKey         = "InvalidFilterKey"
	CodeSSMInternalServerError   = "InternalServerError"

	TypeString       = "String"
	TypeStringList   = "StringList"
	TypeSecureString = "SecureString"

	maxParameterNameLength   = 2048
	maxParameterValueBytes   = 4096
	maxParameterVersions     = 100
	maxParameterDepth        = 15
	maxParametersPerGet      = 10
	maxByPathResults         = 10
	maxDescribeResults       = 50
	defaultSecureStringKeyID = "alias/aws/ssm"
)

var parameterNameRE = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

var parameterTypes = []string{TypeString, TypeStringList, TypeSecureString}

// paramRecord is a parameter as stored: every version's value sealed.
type paramRecord struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	KeyID       string         `json:"keyId,omitempty"`
	DataType    string         `json:"dataType,omitempty"`
	Tags        []Tag          `json:"tags,omitempty"`
	Versions    []paramVersion `json:"versions"`
}

type paramVersion struct {
	Version  int64     `json:"version"`
	Type     string    `json:"type"`
	Modified time.Time `json:"modified"`
	// Sealed is the value, sealed and bound to the parameter's name and
	// this version.
	Sealed []byte `json:"sealed"`
}

func (r *paramRecord) latest() *paramVersion { return &r.Versions[len(r.Versions)-1] }

func paramAAD(name string, version int64) []byte {
	return []byte("vessel/parameter/" + name + "/" + strconv.FormatInt(version, 10))
}

func validation(format string, args ...any) error {
	return newError(CodeValidation, errdefs.ErrInvalidArgument, format, args...)
}

func parameterNotFound(name string) error {
	return newError(CodeParameterNotFound, errdefs.ErrNotFound, "Parameter %s not found", name)
}

// checkParameterName validates a parameter's name as Parameter Store
// does.
func checkParameterName(name string) error {
	const accepted = "1 to 2048 characters of letters, digits and _.-/, a name with / beginning with /, at most 15 levels, not beginning with aws or ssm"
	switch {
	case name == "":
		return validation("Name is required: %s", accepted)
	case len(name) > maxParameterNameLength || !parameterNameRE.MatchString(name):
		return validation("Parameter name %q is not valid: %s", name, accepted)
	case strings.Contains(name, "/") && !strings.HasPrefix(name, "/"):
		return validation("Parameter name must be a fully qualified name: %q contains / but does not begin with /", name)
	case strings.HasSuffix(name, "/") || strings.Contains(name, "//"):
		return validation("Parameter name %q has an empty level: %s", name, accepted)
	}
	lower := strings.ToLower(strings.TrimPrefix(name, "/"))
	if strings.HasPrefix(lower, "aws") || strings.HasPrefix(lower, "ssm") {
		return validation("Parameter name %q begins with aws or ssm, which are reserved: choose another name", name)
	}
	if depth := strings.Count(name, "/"); depth > maxParameterDepth {
		return newError(CodeHierarchyLevelLimit, errdefs.ErrInvalidArgument, "Parameter name %q has %d levels; at most %d are accepted", name, depth, maxParameterDepth)
	}
	return nil
}

func (s *Service) parameterARN(name string) string {
	return "arn:aws:ssm:" + s.cfg.Region + ":" + s.cfg.AccountID + ":parameter/" + strings.TrimPrefix(name, "/")
}

// parameterNames are the names a parameter reference (a name or an ARN,
// without selector) may stand for, most likely first: the ARN of "a" and
// of "/a" read the same.
func (s *Service) parameterNames(ref string) ([]string, error) {
	rest, ok := strings.CutPrefix(ref, "arn:")
	if !ok {
		return []string{ref}, nil
	}
	f := strings.SplitN(rest, ":", 5)
	if len(f) != 5 || f[1] != "ssm" || !strings.HasPrefix(f[4], "parameter/") || f[4] == "parameter/" {
		return nil, validation("%s is not a parameter's ARN: expected arn:aws:ssm:REGION:ACCOUNT:parameter/NAME, or the parameter's name", ref)
	}
	if f[2] != s.cfg.Region || f[3] != s.cfg.AccountID {
		return nil, parameterNotFound(ref)
	}
	name := strings.TrimPrefix(f[4], "parameter/")
	if strings.Contains(name, "/") {
		return []string{"/" + name}, nil
	}
	return []string{name, "/" + name}, nil
}

// loadParameter reads the parameter ref (a name or ARN) names.
func (s *Service) loadParameter(ctx context.Context, ref string) (*paramRecord, error) {
	names, err := s.parameterNames(ref)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		r, err := jsonrec.Get[paramRecord](ctx, s.st, ParameterPrefix+n)
		if err == nil {
			return r, nil
		}
		if !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	return nil, parameterNotFound(ref)
}

// Parameter is one parameter's value, as GetParameter(s) answer.
type Parameter struct {
	Name             string  `json:"Name"`
	Type             string  `json:"Type"`
	Value            string  `json:"Value"`
	Version          int64   `json:"Version"`
	Selector         *string `json:"Selector,omitempty"`
	LastModifiedDate *epoch  `json:"LastModifiedDate,omitempty"`
	ARN              string  `json:"ARN"`
	DataType         string  `json:"DataType"`
}

// parameter renders version v of r; a SecureString's value is its sealed
// form (base64) unless decrypt.
func (s *Service) parameter(r *paramRecord, v *paramVersion, decrypt bool) (Parameter, error) {
	p := Parameter{Name: r.Name, Type: v.Type, Version: v.Version, LastModifiedDate: epochOf(v.Modified),
		ARN: s.parameterARN(r.Name), DataType: r.DataType}
	if p.DataType == "" {
		p.DataType = "text"
	}
	if v.Type == TypeSecureString && !decrypt {
		p.Value = base64.StdEncoding.EncodeToString(v.Sealed)
		return p, nil
	}
	value, err := s.cfg.Sealer.Open(v.Sealed, paramAAD(r.Name, v.Version))
	if err != nil {
		return Parameter{}, newError(CodeSSMInternalServerError, errdefs.ErrUnavailable,
			"the value of parameter %s version %d does not open with this control plane's secrets key (was the store moved without its key?)", r.Name, v.Version)
	}
	p.Value = string(value)
	return p, nil
}

// getParameter reads ref, which may end with :VERSION.
func (s *Service) getParameter(ctx context.Context, ref string, decrypt bool) (Parameter, error) {
	base, selector := ref, ""
	// A selector follows the name's last colon; an ARN's colons come
	// before "parameter/".
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.HasPrefix(ref[i+1:], "parameter/") {
		base, selector = ref[:i], ref[i+1:]
	}
	if !strings.HasPrefix(base, "arn:") {
		if err := checkParameterName(base); err != nil {
			return Parameter{}, err
		}
	}
	r, err := s.loadParameter(ctx, base)
	if err != nil {
		return Parameter{}, err
	}
	v := r.latest()
	if selector != "" {
		n, err := strconv.ParseInt(selector, 10, 64)
		if err != nil || n < 1 {
			return Parameter{}, validation("selector %q of %s is not a version number: give NAME:VERSION with VERSION 1 or more (labels are not supported)", selector, ref)
		}
		i := slices.IndexFunc(r.Versions, func(v paramVersion) bool { return v.Version == n })
		if i < 0 {
			return Parameter{}, newError(CodeParameterVersionNotFound, errdefs.ErrNotFound,
				"Systems Manager could not find version %d of %s: its versions are %d to %d", n, r.Name, r.Versions[0].Version, v.Version)
		}
		v = &r.Versions[i]
	}
	p, err := s.parameter(r, v, decrypt)
	if selector != "" {
		sel := ":" + selector
		p.Selector = &sel
	}
	return p, err
}

// PutParameterInput is PutParameter's request.
type PutParameterInput struct {
	Name           *string `json:"Name"`
	Value          *string `json:"Value"`
	Type           *string `json:"Type"`
	Description    *string `json:"Description"`
	KeyId          *string `json:"KeyId"`
	Overwrite      *bool   `json:"Overwrite"`
	AllowedPattern *string `json:"AllowedPattern"`
	Tags           []Tag   `json:"Tags"`
	Tier           *string `json:"Tier"`
	DataType       *string `json:"DataType"`
}

// PutParameterOutput is PutParameter's answer.
type PutParameterOutput struct {
	Version int64  `json:"Version"`
	Tier    string `json:"Tier"`
}

// PutParameter creates a parameter, or with Overwrite adds its next
// version.
func (s *Service) PutParameter(ctx context.Context, in *PutParameterInput) (*PutParameterOutput, error) {
	name := deref(in.Name)
	if err := checkParameterName(name); err != nil {
		return nil, err
	}
	if in.Value == nil || *in.Value == "" {
		return nil, validation("Value is required: 1 to %d bytes", maxParameterValueBytes)
	}
	if len(*in.Value) > maxParameterValueBytes {
		return nil, validation("Value has %d bytes; a Standard parameter holds at most %d", len(*in.Value), maxParameterValueBytes)
	}
	if in.Type != nil && !slices.Contains(parameterTypes, *in.Type) {
		return nil, newError(CodeUnsupportedParameterType, errdefs.ErrInvalidArgument,
			"Type %q is not supported: accepted types are %s", *in.Type, strings.Join(parameterTypes, ", "))
	}
	if in.Tier != nil && *in.Tier != "Standard" && *in.Tier != "Intelligent-Tiering" {
		return nil, validation("Tier %q is not supported: Standard (or Intelligent-Tiering, which stays Standard)", *in.Tier)
	}
	if in.DataType != nil && *in.DataType != "text" {
		return nil, validation("DataType %q is not supported: text", *in.DataType)
	}
	if in.AllowedPattern != nil {
		re, err := regexp.Compile(*in.AllowedPattern)
		if err != nil {
			return nil, validation("AllowedPattern %q is not a regular expression: %v", *in.AllowedPattern, err)
		}
		if !re.MatchString(*in.Value) {
			return nil, newError("ParameterPatternMismatchException", errdefs.ErrInvalidArgument,
				"Parameter value, cannot be validated against allowedPattern: %s", *in.AllowedPattern)
		}
	}
	overwrite := in.Overwrite != nil && *in.Overwrite
	if overwrite && len(in.Tags) > 0 {
		return nil, validation("Tags and Overwrite can't be used together: tag an existing parameter with AddTagsToResource")
	}
	now := s.cfg.Now().UTC()
	r, err := jsonrec.Update(ctx, s.st, ParameterPrefix+name, func(old *paramRecord) (*paramRecord, error) {
		typ := deref(in.Type)
		if old != nil {
			if !overwrite {
				return nil, newError(CodeParameterAlreadyExists, errdefs.ErrAlreadyExists,
					"The parameter %s already exists: pass Overwrite to store a new version", name)
			}
			if typ == "" {
				typ = old.latest().Type
			}
		} else {
			if typ == "" {
				return nil, validation("Type is required for a new parameter: %s", strings.Join(parameterTypes, ", "))
			}
			old = &paramRecord{Name: name, Tags: in.Tags, DataType: "text"}
		}
		if in.Description != nil {
			old.Description = *in.Description
		}
		if typ == TypeSecureString {
			old.KeyID = defaultSecureStringKeyID
			if in.KeyId != nil && *in.KeyId != "" {
				old.KeyID = *in.KeyId
			}
		} else if in.KeyId != nil {
			return nil, validation("KeyId is for SecureString parameters only; %s is a %s", name, typ)
		}
		next := int64(1)
		if len(old.Versions) > 0 {
			next = old.latest().Version + 1
		}
		sealed, err := s.cfg.Sealer.Seal([]byte(*in.Value), paramAAD(name, next))
		if err != nil {
			return nil, err
		}
		old.Versions = append(old.Versions, paramVersion{Version: next, Type: typ, Modified: now, Sealed: sealed})
		if n := len(old.Versions); n > maxParameterVersions {
			old.Versions = old.Versions[n-maxParameterVersions:]
		}
		return old, nil
	})
	if err != nil {
		return nil, err
	}
	return &PutParameterOutput{Version: r.latest().Version, Tier: "Standard"}, nil
}

// GetParameterInput is GetParameter's request.
type GetParameterInput struct {
	Name           *string `json:"Name"`
	WithDecryption *bool   `json:"WithDecryption"`
}

// GetParameterOutput is GetParameter's answer.
type GetParameterOutput struct {
	Parameter Parameter `json:"Parameter"`
}

// GetParameter returns a parameter's latest version, or NAME:VERSION's.
func (s *Service) GetParameter(ctx context.Context, in *GetParameterInput) (*GetParameterOutput, error) {
	p, err := s.getParameter(ctx, deref(in.Name), in.WithDecryption != nil && *in.WithDecryption)
	if err != nil {
		return nil, err
	}
	return &GetParameterOutput{Parameter: p}, nil
}

// GetParametersInput is GetParameters' request.
type GetParametersInput struct {
	Names          []string `json:"Names"`
	WithDecryption *bool    `json:"WithDecryption"`
}

// GetParametersOutput is GetParameters' answer.
type GetParametersOutput struct {
	Parameters        []Parameter `json:"Parameters"`
	InvalidParameters []string    `json:"InvalidParameters"`
}

// GetParameters returns up to 10 parameters; the names not found are
// listed in InvalidParameters.
func (s *Service) GetParameters(ctx context.Context, in *GetParametersInput) (*GetParametersOutput, error) {
	if len(in.Names) == 0 || len(in.Names) > maxParametersPerGet {
		return nil, validation("Names holds %d names; give 1 to %d", len(in.Names), maxParametersPerGet)
	}
	out := &GetParametersOutput{Parameters: []Parameter{}, InvalidParameters: []string{}}
	for _, n := range in.Names {
		p, err := s.getParameter(ctx, n, in.WithDecryption != nil && *in.WithDecryption)
		switch {
		case errdefs.IsNotFound(err):
			out.InvalidParameters = append(out.InvalidParameters, n)
		case err != nil:
			return nil, err
		default:
			out.Parameters = append(out.Parameters, p)
		}
	}
	return out, nil
}

// GetParametersByPathInput is GetParametersByPath's request.
type GetParametersByPathInput struct {
	Path           *string `json:"Path"`
	Recursive      *bool   `json:"Recursive"`
	WithDecryption *bool   `json:"WithDecryption"`
	MaxResults     *int32  `json:"MaxResults"`
	NextToken      *string `json:"NextToken"`
	// ParameterFilters are refused when given (not supported).
	ParameterFilters []any `json:"ParameterFilters"`
}

// GetParametersByPathOutput is GetParametersByPath's answer.
type GetParametersByPathOutput struct {
	Parameters []Parameter `json:"Parameters"`
	NextToken  *string     `json:"NextToken,omitempty"`
}

// underPath reports whether name is below path: one level down, or any
// with recursive.
func underPath(name, path string, recursive bool) bool {
	prefix := strings.TrimSuffix(path, "/") + "/"
	rest, ok := strings.CutPrefix(name, prefix)
	return ok && rest != "" && (recursive || !strings.Contains(rest, "/"))
}

// GetParametersByPath returns the parameters below Path, in name order.
func (s *Service) GetParametersByPath(ctx context.Context, in *GetParametersByPathInput) (*GetParametersByPathOutput, error) {
	path := deref(in.Path)
	if !strings.HasPrefix(path, "/") || len(path) > maxParameterNameLength {
		return nil, validation("Path %q is not a hierarchy: it begins with / (e.g. /app/prod)", path)
	}
	if len(in.ParameterFilters) > 0 {
		return nil, validation("ParameterFilters are not supported by GetParametersByPath here: filter by Path and Recursive")
	}
	limit, err := maxResults(in.MaxResults, maxByPathResults)
	if err != nil {
		return nil, err
	}
	recs, err := jsonrec.List[paramRecord](ctx, s.st, ParameterPrefix)
	if err != nil {
		return nil, err
	}
	recs = slices.DeleteFunc(recs, func(r *paramRecord) bool {
		return !underPath(r.Name, path, in.Recursive != nil && *in.Recursive)
	})
	recs, next, err := pageOf(recs, in.NextToken, limit)
	if err != nil {
		return nil, err
	}
	out := &GetParametersByPathOutput{Parameters: []Parameter{}, NextToken: next}
	for _, r := range recs {
		p, err := s.parameter(r, r.latest(), in.WithDecryption != nil && *in.WithDecryption)
		if err != nil {
			return nil, err
		}
		out.Parameters = append(out.Parameters, p)
	}
	return out, nil
}

func maxResults(n *int32, limit int) (int, error) {
	if n == nil {
		return limit, nil
	}
	if *n < 1 || int(*n) > limit {
		return 0, validation("MaxResults %d is out of range: accepted values are 1 to %d", *n, limit)
	}
	return int(*n), nil
}

// pageOf cuts recs (in name order, as the store lists them) after the
// name token and at limit; the next token is the last name returned.
func pageOf(recs []*paramRecord, token *string, limit int) ([]*paramRecord, *string, error) {
	start := 0
	if token != nil && *token != "" {
		start = slices.IndexFunc(recs, func(r *paramRecord) bool { return r.Name > *token })
		if start < 0 {
			start = len(recs)
		}
	}
	end := min(start+limit, len(recs))
	var next *string
	if end < len(recs) {
		next = &recs[end-1].Name
	}
	return recs[start:end], next, nil
}

// DeleteParameterInput is DeleteParameter's request.
type DeleteParameterInput struct {
	Name *string `json:"Name"`
}

// DeleteParameterOutput is DeleteParameter's answer.
type DeleteParameterOutput struct{}

// DeleteParameter deletes a parameter and all its versions.
func (s *Service) DeleteParameter(ctx context.Context, in *DeleteParameterInput) (*DeleteParameterOutput, error) {
	name := deref(in.Name)
	if err := checkParameterName(name); err != nil {
		return nil, err
	}
	err := s.st.Delete(ctx, ParameterPrefix+name, store.AnyRevision)
	if errdefs.IsNotFound(err) {
		return nil, parameterNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	return &DeleteParameterOutput{}, nil
}

// DeleteParametersInput is DeleteParameters' request.
type DeleteParametersInput struct {
	Names []string `json:"Names"`
}

// DeleteParametersOutput is DeleteParameters' answer.
type DeleteParametersOutput struct {
	DeletedParameters []string `json:"DeletedParameters"`
	InvalidParameters []string `json:"InvalidParameters"`
}

// DeleteParameters deletes up to 10 parameters; those not found are
// listed in InvalidParameters.
func (s *Service) DeleteParameters(ctx context.Context, in *DeleteParametersInput) (*DeleteParametersOutput, error) {
	if len(in.Names) == 0 || len(in.Names) > maxParametersPerGet {
		return nil, validation("Names holds %d names; give 1 to %d", len(in.Names), maxParametersPerGet)
	}
	out := &DeleteParametersOutput{DeletedParameters: []string{}, InvalidParameters: []string{}}
	for _, n := range in.Names {
		_, err := s.DeleteParameter(ctx, &DeleteParameterInput{Name: &n})
		switch {
		case errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err):
			out.InvalidParameters = append(out.InvalidParameters, n)
		case err != nil:
			return nil, err
		default:
			out.DeletedParameters = append(out.DeletedParameters, n)
		}
	}
	return out, nil
}

// DescribeParametersInput is DescribeParameters' request.
type DescribeParametersInput struct {
	MaxResults       *int32            `json:"MaxResults"`
	NextToken        *string           `json:"NextToken"`
	ParameterFilters []ParameterFilter `json:"ParameterFilters"`
	Filters          []any             `json:"Filters"`
}

// ParameterFilter is one of DescribeParameters' filters.
type ParameterFilter struct {
	Key    *string  `json:"Key"`
	Option *string  `json:"Option"`
	Values []string `json:"Values"`
}

// ParameterMetadata is one parameter, without its value.
type ParameterMetadata struct {
	Name             string `json:"Name"`
	ARN              string `json:"ARN"`
	Type             string `json:"Type"`
	KeyId            string `json:"KeyId,omitempty"`
	LastModifiedDate *epoch `json:"LastModifiedDate,omitempty"`
	Description      string `json:"Description,omitempty"`
	Version          int64  `json:"Version"`
	Tier             string `json:"Tier"`
	DataType         string `json:"DataType"`
}

// DescribeParametersOutput is DescribeParameters' answer.
type DescribeParametersOutput struct {
	Parameters []ParameterMetadata `json:"Parameters"`
	NextToken  *string             `json:"NextToken,omitempty"`
}

// DescribeParameters lists parameters without values, in name order,
// filtered by Name (Equals, BeginsWith, Contains), Type (Equals) or Path
// (OneLevel, Recursive).
func (s *Service) DescribeParameters(ctx context.Context, in *DescribeParametersInput) (*DescribeParametersOutput, error) {
	if len(in.Filters) > 0 {
		return nil, validation("Filters are not supported: use ParameterFilters (Name, Type, Path)")
	}
	limit, err := maxResults(in.MaxResults, maxDescribeResults)
	if err != nil {
		return nil, err
	}
	for _, f := range in.ParameterFilters {
		if err := checkFilter(f); err != nil {
			return nil, err
		}
	}
	recs, err := jsonrec.List[paramRecord](ctx, s.st, ParameterPrefix)
	if err != nil {
		return nil, err
	}
	recs = slices.DeleteFunc(recs, func(r *paramRecord) bool {
		for _, f := range in.ParameterFilters {
			if !matchFilter(r, f) {
				return true
			}
		}
		return false
	})
	recs, next, err := pageOf(recs, in.NextToken, limit)
	if err != nil {
		return nil, err
	}
	out := &DescribeParametersOutput{Parameters: []ParameterMetadata{}, NextToken: next}
	for _, r := range recs {
		v := r.latest()
		m := ParameterMetadata{Name: r.Name, ARN: s.parameterARN(r.Name), Type: v.Type, LastModifiedDate: epochOf(v.Modified),
			Description: r.Description, Version: v.Version, Tier: "Standard", DataType: "text"}
		if v.Type == TypeSecureString {
			m.KeyId = r.KeyID
		}
		out.Parameters = append(out.Parameters, m)
	}
	return out, nil
}

var filterOptions = map[string][]string{
	"Name": {"Equals", "BeginsWith", "Contains"},
	"Type": {"Equals"},
	"Path": {"OneLevel", "Recursive"},
}

func checkFilter(f ParameterFilter) error {
	key := deref(f.Key)
	opts, ok := filterOptions[key]
	if !ok {
		return newError(CodeInvalidFilterKey, errdefs.ErrInvalidArgument, "ParameterFilters key %q is not supported: accepted keys are Name, Type and Path", key)
	}
	if f.Option != nil && !slices.Contains(opts, *f.Option) {
		return newError("InvalidFilterOption", errdefs.ErrInvalidArgument, "ParameterFilters option %q is not accepted for key %s: %s", *f.Option, key, strings.Join(opts, ", "))
	}
	if len(f.Values) == 0 {
		return newError("InvalidFilterValue", errdefs.ErrInvalidArgument, "ParameterFilters key %s has no values: give 1 to 50", key)
	}
	return nil
}

func matchFilter(r *paramRecord, f ParameterFilter) bool {
	opt := deref(f.Option)
	return slices.ContainsFunc(f.Values, func(v string) bool {
		switch *f.Key {
		case "Type":
			return r.latest().Type == v
		case "Path":
			return underPath(r.Name, v, opt == "Recursive")
		}
		switch opt {
		case "BeginsWith":
			return strings.HasPrefix(r.Name, v)
		case "Contains":
			return strings.Contains(r.Name, v)
		}
		return r.Name == v
	})
}
