package secrets

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"vessel.dev/vessel/internal/errdefs"
	"vessel.dev/vessel/internal/store/jsonrec"
)

// Secrets Manager's exception names.
const (
	CodeResourceNotFound   = "ResourceNotFoundException"
	CodeResourceExists     = "ResourceExistsException"
	CodeInvalidRequest     = "InvalidRequestException"
	CodeInvalidParameter   = "InvalidParameterException"
	CodeInvalidNextToken   = "InvalidNextTokenException"
	CodeSMInternalFailure  = "InternalServiceError"
	StageCurrent           = "AWSCURRENT"
	StagePrevious          = "AWSPREVIOUS"
	maxSecretValueBytes    = 65536
	maxSecretVersions      = 100
	defaultRecoveryDays    = 30
	minRecoveryDays        = 7
	maxRecoveryDays        = 30
	maxListSecretsResults  = 100
	maxSecretNameLength    = 512
	maxSecretDescription   = 2048
	minClientRequestToken  = 32
	maxClientRequestToken  = 64
	secretNameCharsMessage = "letters, digits and /_+=.@-"
)

var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]+$`)

// Tag is a key/value tag of a secret or parameter.
type Tag struct {
	Key   *string `json:"Key,omitempty"`
	Value *string `json:"Value,omitempty"`
}

// secretRecord is a secret as stored: everything in clear but the values.
type secretRecord struct {
	Name        string    `json:"name"`
	ARN         string    `json:"arn"`
	Description string    `json:"description,omitempty"`
	KmsKeyID    string    `json:"kmsKeyId,omitempty"`
	Tags        []Tag     `json:"tags,omitempty"`
	Created     time.Time `json:"created"`
	Changed     time.Time `json:"changed"`
	Accessed    time.Time `json:"accessed,omitzero"`
	// Deleted is when DeleteSecret was called, DeletionDate when the
	// secret goes for good; both zero unless it is scheduled for deletion.
	Deleted      time.Time       `json:"deleted,omitzero"`
	DeletionDate time.Time       `json:"deletionDate,omitzero"`
	Versions     []secretVersion `json:"versions,omitempty"`
}

type secretVersion struct {
	ID      string    `json:"id"`
	Stages  []string  `json:"stages,omitempty"`
	Created time.Time `json:"created"`
	// Sealed is the value (secretValue as JSON), sealed and bound to the
	// secret's ARN and this version's ID.
	Sealed []byte `json:"sealed"`
}

// secretValue is a version's value: a string or bytes.
type secretValue struct {
	String *string `json:"s,omitempty"`
	Binary []byte  `json:"b,omitempty"`
}

func secretAAD(arn, version string) []byte { return []byte("vessel/secret/" + arn + "/" + version) }

func (s *Service) sealSecret(arn, version string, v secretValue) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.cfg.Sealer.Seal(data, secretAAD(arn, version))
}

func (s *Service) openSecret(r *secretRecord, v *secretVersion) (secretValue, error) {
	data, err := s.cfg.Sealer.Open(v.Sealed, secretAAD(r.ARN, v.ID))
	if err != nil {
		return secretValue{}, newError(CodeSMInternalFailure, errdefs.ErrUnavailable,
			"the value of secret %s version %s does not open with this control plane's secrets key (was the store moved without its key?)", r.ARN, v.ID)
	}
	var out secretValue
	if err := json.Unmarshal(data, &out); err != nil {
		return secretValue{}, err
	}
	return out, nil
}

func (r *secretRecord) version(id string) *secretVersion {
	for i := range r.Versions {
		if r.Versions[i].ID == id {
			return &r.Versions[i]
		}
	}
	return nil
}

func (r *secretRecord) staged(stage string) *secretVersion {
	for i := range r.Versions {
		if slices.Contains(r.Versions[i].Stages, stage) {
			return &r.Versions[i]
		}
	}
	return nil
}

func (r *secretRecord) stagesByVersion() map[string][]string {
	out := map[string][]string{}
	for _, v := range r.Versions {
		if len(v.Stages) > 0 {
			out[v.ID] = v.Stages
		}
	}
	return out
}

// addVersion adds a version with stages, moving them off the versions
// that held them; a version that loses AWSCURRENT becomes AWSPREVIOUS.
func (r *secretRecord) addVersion(v secretVersion) {
	for _, st := range v.Stages {
		for i := range r.Versions {
			o := &r.Versions[i]
			if !slices.Contains(o.Stages, st) {
				continue
			}
			o.Stages = slices.DeleteFunc(o.Stages, func(x string) bool { return x == st })
			if st == StageCurrent {
				for j := range r.Versions {
					r.Versions[j].Stages = slices.DeleteFunc(r.Versions[j].Stages, func(x string) bool { return x == StagePrevious })
				}
				o.Stages = append(o.Stages, StagePrevious)
			}
		}
	}
	r.Versions = append(r.Versions, v)
	// Keep at most maxSecretVersions, dropping the oldest without stages.
	for len(r.Versions) > maxSecretVersions {
		i := slices.IndexFunc(r.Versions, func(v secretVersion) bool { return len(v.Stages) == 0 })
		if i < 0 {
			break
		}
		r.Versions = slices.Delete(r.Versions, i, i+1)
	}
}

func notFoundSecret(id string) error {
	return newError(CodeResourceNotFound, errdefs.ErrNotFound,
		"Secrets Manager can't find the specified secret: %s", id)
}

func markedForDeletion(r *secretRecord) error {
	return newError(CodeInvalidRequest, errdefs.ErrConflict,
		"You can't perform this operation on the secret because it was marked for deletion: %s is to be deleted on %s; RestoreSecret brings it back",
		r.ARN, r.DeletionDate.UTC().Format(time.RFC3339))
}

func invalidParam(format string, args ...any) error {
	return newError(CodeInvalidParameter, errdefs.ErrInvalidArgument, format, args...)
}

// expired reports whether r's recovery window is over: it is gone.
func (s *Service) expired(r *secretRecord) bool {
	return r != nil && !r.DeletionDate.IsZero() && !s.cfg.Now().Before(r.DeletionDate)
}

func (s *Service) secretARN(name string) string {
	// Six random characters, as Secrets Manager adds (its are of mixed
	// case; these of base32's upper case and digits).
	return "arn:aws:secretsmanager:" + s.cfg.Region + ":" + s.cfg.AccountID + ":secret:" + name + "-" + rand.Text()[:6]
}

// secretRef is a SecretId resolved to a stored name, with the ARN it
// must have when the caller gave a full ARN.
type secretRef struct {
	id, name, arn string
}

// resolveSecretID finds the secret id names: a name, a full ARN or a
// partial ARN (without the random suffix).
func (s *Service) resolveSecretID(ctx context.Context, id string) (secretRef, error) {
	if id == "" {
		return secretRef{}, invalidParam("SecretId is required: give the secret's name or ARN")
	}
	rest, ok := strings.CutPrefix(id, "arn:")
	if !ok {
		return secretRef{id: id, name: id}, nil
	}
	// arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[-XXXXXX]
	f := strings.SplitN(rest, ":", 6)
	if len(f) != 6 || f[1] != "secretsmanager" || f[4] != "secret" || f[5] == "" {
		return secretRef{}, invalidParam("SecretId %s is not a secret's ARN: expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX, or the secret's name", id)
	}
	region, account, name := f[2], f[3], f[5]
	if region != s.cfg.Region || account != s.cfg.AccountID {
		return secretRef{}, notFoundSecret(id)
	}
	// A partial ARN names the secret by its name alone; a full one ends
	// with the random suffix. A secret named as the whole is taken first.
	if _, err := s.st.Get(ctx, Prefix+name); err == nil {
		return secretRef{id: id, name: name}, nil
	} else if !errdefs.IsNotFound(err) {
		return secretRef{}, err
	}
	if hasSuffix(name) {
		return secretRef{id: id, name: name[:len(name)-7], arn: id}, nil
	}
	return secretRef{id: id, name: name}, nil
}

// hasSuffix reports whether name ends as a full ARN's name does: a hyphen
// and six characters.
func hasSuffix(name string) bool { return len(name) > 7 && name[len(name)-7] == '-' }

// loadSecret reads the secret ref names; a missing one, or one whose ARN
// is not the one asked for, is ResourceNotFoundException.
func (s *Service) loadSecret(ctx context.Context, ref secretRef) (*secretRecord, error) {
	r, err := jsonrec.Get[secretRecord](ctx, s.st, Prefix+ref.name)
	if err == nil && s.expired(r) {
		s.purge(ctx, r.Name)
	}
	if errdefs.IsNotFound(err) || err == nil && (s.expired(r) || ref.arn != "" && r.ARN != ref.arn) {
		return nil, notFoundSecret(ref.id)
	}
	return r, err
}

// purge deletes secret name from the store if its recovery window is
// over: its sealed values go with it.
func (s *Service) purge(ctx context.Context, name string) {
	_, err := jsonrec.Update(ctx, s.st, Prefix+name, func(old *secretRecord) (*secretRecord, error) {
		if old != nil && !s.expired(old) {
			return old, nil // recreated meanwhile: keep
		}
		return nil, nil
	})
	if err != nil {
		s.log.Warn("deleting a secret whose recovery window is over failed", "secret", name, "err", err)
		return
	}
	s.log.Info("secret deleted: its recovery window is over", "secret", name)
}

// updateSecret changes the secret ref names with fn, which is given the
// live record (never nil: a missing secret is ResourceNotFoundException).
func (s *Service) updateSecret(ctx context.Context, ref secretRef, fn func(r *secretRecord) error) (*secretRecord, error) {
	return jsonrec.Update(ctx, s.st, Prefix+ref.name, func(old *secretRecord) (*secretRecord, error) {
		if old == nil || s.expired(old) || ref.arn != "" && old.ARN != ref.arn {
			return nil, notFoundSecret(ref.id)
		}
		if err := fn(old); err != nil {
			return nil, err
		}
		return old, nil
	})
}

func checkToken(token *string) (string, error) {
	if token == nil || *token == "" {
		return uuid.NewString(), nil
	}
	if n := len(*token); n < minClientRequestToken || n > maxClientRequestToken {
		return "", invalidParam("ClientRequestToken has %d characters; it must have %d to %d (a UUID is best)", n, minClientRequestToken, maxClientRequestToken)
	}
	return *token, nil
}

// checkValue returns the value given by SecretString or SecretBinary; ok
// is false when neither is.
func checkValue(str *string, bin []byte) (v secretValue, ok bool, err error) {
	switch {
	case str != nil && bin != nil:
		return v, false, invalidParam("give SecretString or SecretBinary, not both")
	case str != nil:
		if len(*str) > maxSecretValueBytes {
			return v, false, invalidParam("SecretString has %d bytes; at most %d are accepted", len(*str), maxSecretValueBytes)
		}
		return secretValue{String: str}, true, nil
	case bin != nil:
		if len(bin) > maxSecretValueBytes {
			return v, false, invalidParam("SecretBinary has %d bytes; at most %d are accepted", len(bin), maxSecretValueBytes)
		}
		return secretValue{Binary: bin}, true, nil
	}
	return v, false, nil
}

func (v secretValue) equal(o secretValue) bool {
	if (v.String == nil) != (o.String == nil) {
		return false
	}
	if v.String != nil {
		return *v.String == *o.String
	}
	return string(v.Binary) == string(o.Binary)
}

// putVersion adds value under token with stages to r, or, when r already
// has a version token (a retried call), checks that it holds the same
// value. It returns the version.
func (s *Service) putVersion(r *secretRecord, token string, value secretValue, stages []string) (*secretVersion, error) {
	if v := r.version(token); v != nil {
		old, err := s.openSecret(r, v)
		if err != nil {
			return nil, err
		}
		if !old.equal(value) {
			return nil, newError(CodeResourceExists, errdefs.ErrAlreadyExists,
				"a version with ClientRequestToken %s already exists with another value: give a new ClientRequestToken for a new value", token)
		}
		return v, nil
	}
	sealed, err := s.sealSecret(r.ARN, token, value)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	r.addVersion(secretVersion{ID: token, Stages: stages, Created: now, Sealed: sealed})
	r.Changed = now
	return r.version(token), nil
}

func checkSecretName(name *string) (string, error) {
	if name == nil || *name == "" {
		return "", invalidParam("Name is required: 1 to %d characters of %s", maxSecretNameLength, secretNameCharsMessage)
	}
	n := *name
	if len(n) > maxSecretNameLength || !secretNameRE.MatchString(n) {
		return "", invalidParam("Name %q is not a valid secret name: 1 to %d characters of %s", n, maxSecretNameLength, secretNameCharsMessage)
	}
	return n, nil
}

func checkDescription(d *string) error {
	if d != nil && len(*d) > maxSecretDescription {
		return invalidParam("Description has %d characters; at most %d are accepted", len(*d), maxSecretDescription)
	}
	return nil
}

// CreateSecretInput is CreateSecret's request.
type CreateSecretInput struct {
	Name               *string `json:"Name"`
	ClientRequestToken *string `json:"ClientRequestToken"`
	Description        *string `json:"Description"`
	KmsKeyId           *string `json:"KmsKeyId"`
	SecretBinary       []byte  `json:"SecretBinary"`
	SecretString       *string `json:"SecretString"`
	Tags               []Tag   `json:"Tags"`
	AddReplicaRegions  []any   `json:"AddReplicaRegions"`
}

// CreateSecretOutput is CreateSecret's answer.
type CreateSecretOutput struct {
	ARN       string  `json:"ARN"`
	Name      string  `json:"Name"`
	VersionId *string `json:"VersionId,omitempty"`
}

// CreateSecret makes a secret, with a first version AWSCURRENT when a
// value is given.
func (s *Service) CreateSecret(ctx context.Context, in *CreateSecretInput) (*CreateSecretOutput, error) {
	name, err := checkSecretName(in.Name)
	if err != nil {
		return nil, err
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	if len(in.AddReplicaRegions) > 0 {
		return nil, invalidParam("AddReplicaRegions is not supported: secrets live in this control plane's region %s only", s.cfg.Region)
	}
	value, hasValue, err := checkValue(in.SecretString, in.SecretBinary)
	if err != nil {
		return nil, err
	}
	token, err := checkToken(in.ClientRequestToken)
	if err != nil {
		return nil, err
	}
	var versionID *string
	rec, err := jsonrec.Update(ctx, s.st, Prefix+name, func(old *secretRecord) (*secretRecord, error) {
		if old != nil && !s.expired(old) {
			if !old.DeletionDate.IsZero() {
				return nil, newError(CodeInvalidRequest, errdefs.ErrConflict,
					"You can't create this secret because a secret with this name is already scheduled for deletion: restore %s with RestoreSecret, or choose another name", old.ARN)
			}
			// A retried call with the same token and value answers as the first.
			if v := old.version(token); in.ClientRequestToken != nil && v != nil && hasValue {
				if got, err := s.openSecret(old, v); err == nil && got.equal(value) {
					versionID = &v.ID
					return old, nil
				}
			}
			return nil, newError(CodeResourceExists, errdefs.ErrAlreadyExists,
				"The operation failed because the secret %s already exists: change it with PutSecretValue or UpdateSecret, or choose another name", name)
		}
		now := s.cfg.Now().UTC()
		r := &secretRecord{Name: name, ARN: s.secretARN(name), Tags: in.Tags, Created: now, Changed: now}
		if in.Description != nil {
			r.Description = *in.Description
		}
		if in.KmsKeyId != nil {
			r.KmsKeyID = *in.KmsKeyId
		}
		if hasValue {
			v, err := s.putVersion(r, token, value, []string{StageCurrent})
			if err != nil {
				return nil, err
			}
			versionID = &v.ID
		}
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("secret created", "arn", rec.ARN)
	return &CreateSecretOutput{ARN: rec.ARN, Name: rec.Name, VersionId: versionID}, nil
}

// GetSecretValueInput is GetSecretValue's request.
type GetSecretValueInput struct {
	SecretId     *string `json:"SecretId"`
	VersionId    *string `json:"VersionId"`
	VersionStage *string `json:"VersionStage"`
}

// GetSecretValueOutput is GetSecretValue's answer.
type GetSecretValueOutput struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionId     string   `json:"VersionId"`
	SecretString  *string  `json:"SecretString,omitempty"`
	SecretBinary  []byte   `json:"SecretBinary,omitempty"`
	VersionStages []string `json:"VersionStages"`
	CreatedDate   *epoch   `json:"CreatedDate,omitempty"`
}

// GetSecretValue returns a version's value: VersionId, else VersionStage,
// else AWSCURRENT.
func (s *Service) GetSecretValue(ctx context.Context, in *GetSecretValueInput) (*GetSecretValueOutput, error) {
	ref, err := s.resolveSecretID(ctx, deref(in.SecretId))
	if err != nil {
		return nil, err
	}
	r, err := s.loadSecret(ctx, ref)
	if err != nil {
		return nil, err
	}
	if !r.DeletionDate.IsZero() {
		return nil, markedForDeletion(r)
	}
	v, err := r.pick(in.VersionId, in.VersionStage)
	if err != nil {
		return nil, err
	}
	value, err := s.openSecret(r, v)
	if err != nil {
		return nil, err
	}
	s.touch(ctx, ref)
	return &GetSecretValueOutput{ARN: r.ARN, Name: r.Name, VersionId: v.ID, SecretString: value.String, SecretBinary: value.Binary,
		VersionStages: append([]string{}, v.Stages...), CreatedDate: epochOf(v.Created)}, nil
}

// pick finds the version asked for by ID and/or stage (AWSCURRENT when
// neither is given).
func (r *secretRecord) pick(id, stage *string) (*secretVersion, error) {
	switch {
	case id != nil && *id != "":
		v := r.version(*id)
		if v == nil {
			return nil, newError(CodeResourceNotFound, errdefs.ErrNotFound,
				"Secrets Manager can't find the specified secret value for VersionId: %s (DescribeSecret lists the versions of %s)", *id, r.Name)
		}
		if stage != nil && *stage != "" && !slices.Contains(v.Stages, *stage) {
			return nil, invalidParam("You provided a VersionStage that is not associated to the provided VersionId: version %s has stages %v", *id, v.Stages)
		}
		return v, nil
	default:
		st := StageCurrent
		if stage != nil && *stage != "" {
			st = *stage
		}
		v := r.staged(st)
		if v == nil {
			return nil, newError(CodeResourceNotFound, errdefs.ErrNotFound,
				"Secrets Manager can't find the specified secret value for staging label: %s (secret %s; DescribeSecret lists its versions' stages)", st, r.Name)
		}
		return v, nil
	}
}

// touch records the day a secret was last read, as Secrets Manager does
// (at most one write a day per secret).
func (s *Service) touch(ctx context.Context, ref secretRef) {
	day := s.cfg.Now().UTC().Truncate(24 * time.Hour)
	r, err := s.loadSecret(ctx, ref)
	if err != nil || !r.Accessed.Before(day) {
		return
	}
	if _, err := s.updateSecret(ctx, ref, func(r *secretRecord) error { r.Accessed = day; return nil }); err != nil {
		s.log.Warn("recording a secret's last access failed", "secret", r.ARN, "err", err)
	}
}

// PutSecretValueInput is PutSecretValue's request.
type PutSecretValueInput struct {
	SecretId           *string  `json:"SecretId"`
	ClientRequestToken *string  `json:"ClientRequestToken"`
	SecretBinary       []byte   `json:"SecretBinary"`
	SecretString       *string  `json:"SecretString"`
	VersionStages      []string `json:"VersionStages"`
}

// PutSecretValueOutput is PutSecretValue's answer.
type PutSecretValueOutput struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionId     string   `json:"VersionId"`
	VersionStages []string `json:"VersionStages"`
}

// PutSecretValue adds a version, AWSCURRENT unless VersionStages says
// otherwise; the version that was current becomes AWSPREVIOUS.
func (s *Service) PutSecretValue(ctx context.Context, in *PutSecretValueInput) (*PutSecretValueOutput, error) {
	value, ok, err := checkValue(in.SecretString, in.SecretBinary)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, invalidParam("give the new value in SecretString or SecretBinary")
	}
	token, err := checkToken(in.ClientRequestToken)
	if err != nil {
		return nil, err
	}
	stages := in.VersionStages
	if len(stages) == 0 {
		stages = []string{StageCurrent}
	}
	for _, st := range stages {
		if st == "" || len(st) > 256 {
			return nil, invalidParam("VersionStages holds %q; a staging label has 1 to 256 characters", st)
		}
	}
	ref, err := s.resolveSecretID(ctx, deref(in.SecretId))
	if err != nil {
		return nil, err
	}
	var v secretVersion
	r, err := s.updateSecret(ctx, ref, func(r *secretRecord) error {
		if !r.DeletionDate.IsZero() {
			return markedForDeletion(r)
		}
		pv, err := s.putVersion(r, token, value, slices.Clone(stages))
		if err == nil {
			v = *pv
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &PutSecretValueOutput{ARN: r.ARN, Name: r.Name, VersionId: v.ID, VersionStages: v.Stages}, nil
}

// UpdateSecretInput is UpdateSecret's request.
type UpdateSecretInput struct {
	SecretId           *string `json:"SecretId"`
	ClientRequestToken *string `json:"ClientRequestToken"`
	Description        *string `json:"Description"`
	KmsKeyId           *string `json:"KmsKeyId"`
	SecretBinary       []byte  `json:"SecretBinary"`
	SecretString       *string `json:"SecretString"`
}

// UpdateSecretOutput is UpdateSecret's answer.
type UpdateSecretOutput struct {
	ARN       string  `json:"ARN"`
	Name      string  `json:"Name"`
	VersionId *string `json:"VersionId,omitempty"`
}

// UpdateSecret changes the description or key and, given a value, adds
// it as the new AWSCURRENT version.
func (s *Service) UpdateSecret(ctx context.Context, in *UpdateSecretInput) (*UpdateSecretOutput, error) {
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	value, hasValue, err := checkValue(in.SecretString, in.SecretBinary)
	if err != nil {
		return nil, err
	}
	token, err := checkToken(in.ClientRequestToken)
	if err != nil {
		return nil, err
	}
	ref, err := s.resolveSecretID(ctx, deref(in.SecretId))
	if err != nil {
		return nil, err
	}
	var versionID *string
	r, err := s.updateSecret(ctx, ref, func(r *secretRecord) error {
		if !r.DeletionDate.IsZero() {
			return markedForDeletion(r)
		}
		if in.Description != nil {
			r.Description = *in.Description
		}
		if in.KmsKeyId != nil {
			r.KmsKeyID = *in.KmsKeyId
		}
		r.Changed = s.cfg.Now().UTC()
		if hasValue {
			v, err := s.putVersion(r, token, value, []string{StageCurrent})
			if err != nil {
				return err
			}
			versionID = &v.ID
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &UpdateSecretOutput{ARN: r.ARN, Name: r.Name, VersionId: versionID}, nil
}

// DescribeSecretInput is DescribeSecret's request.
type DescribeSecretInput struct {
	SecretId *string `json:"SecretId"`
}

// DescribeSecretOutput is DescribeSecret's answer, and ListSecrets'
// entries: never a value.
type DescribeSecretOutput struct {
	ARN                string              `json:"ARN"`
	Name               string              `json:"Name"`
	Description        *string             `json:"Description,omitempty"`
	KmsKeyId           *string             `json:"KmsKeyId,omitempty"`
	RotationEnabled    bool                `json:"RotationEnabled"`
	CreatedDate        *epoch              `json:"CreatedDate,omitempty"`
	LastChangedDate    *epoch              `json:"LastChangedDate,omitempty"`
	LastAccessedDate   *epoch              `json:"LastAccessedDate,omitempty"`
	DeletedDate        *epoch              `json:"DeletedDate,omitempty"`
	NextRotationDate   *epoch              `json:"NextRotationDate,omitempty"`
	Tags               []Tag               `json:"Tags,omitempty"`
	VersionIdsToStages map[string][]string `json:"VersionIdsToStages,omitempty"`
	// SecretVersionsToStages is ListSecrets' name for VersionIdsToStages.
	SecretVersionsToStages map[string][]string `json:"SecretVersionsToStages,omitempty"`
}

func describe(r *secretRecord) DescribeSecretOutput {
	out := DescribeSecretOutput{ARN: r.ARN, Name: r.Name, CreatedDate: epochOf(r.Created), LastChangedDate: epochOf(r.Changed),
		LastAccessedDate: epochOf(r.Accessed), DeletedDate: epochOf(r.Deleted), Tags: r.Tags}
	if r.Description != "" {
		out.Description = &r.Description
	}
	if r.KmsKeyID != "" {
		out.KmsKeyId = &r.KmsKeyID
	}
	return out
}

// DescribeSecret returns a secret's details and its versions' stages.
func (s *Service) DescribeSecret(ctx context.Context, in *DescribeSecretInput) (*DescribeSecretOutput, error) {
	ref, err := s.resolveSecretID(ctx, deref(in.SecretId))
	if err != nil {
		return nil, err
	}
	r, err := s.loadSecret(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := describe(r)
	out.VersionIdsToStages = r.stagesByVersion()
	return &out, nil
}

// ListSecretsInput is ListSecrets' request.
type ListSecretsInput struct {
	MaxResults             *int32   `json:"MaxResults"`
	NextToken              *string  `json:"NextToken"`
	Filters                []Filter `json:"Filters"`
	IncludePlannedDeletion *bool    `json:"IncludePlannedDeletion"`
	SortOrder              *string  `json:"SortOrder"`
}

// Filter is one of ListSecrets' filters.
type Filter struct {
	Key    *string  `json:"Key"`
	Values []string `json:"Values"`
}

// ListSecretsOutput is ListSecrets' answer.
type ListSecretsOutput struct {
	SecretList []DescribeSecretOutput `json:"SecretList"`
	NextToken  *string                `json:"NextToken,omitempty"`
}

var listFilterKeys = []string{"all", "description", "name", "tag-key", "tag-value"}

// ListSecrets lists secrets by name, without values: those scheduled for
// deletion only with IncludePlannedDeletion. Filters match prefixes (a
// value starting with ! negates), as Secrets Manager's.
func (s *Service) ListSecrets(ctx context.Context, in *ListSecretsInput) (*ListSecretsOutput, error) {
	limit := maxListSecretsResults
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > maxListSecretsResults {
			return nil, invalidParam("MaxResults %d is out of range: accepted values are 1 to %d", *in.MaxResults, maxListSecretsResults)
		}
		limit = int(*in.MaxResults)
	}
	for _, f := range in.Filters {
		if f.Key == nil || !slices.Contains(listFilterKeys, *f.Key) {
			return nil, invalidParam("filter key %q is not supported: accepted keys are %s", deref(f.Key), strings.Join(listFilterKeys, ", "))
		}
		if len(f.Values) == 0 {
			return nil, invalidParam("filter %s has no values: give 1 to 10", *f.Key)
		}
	}
	if in.SortOrder != nil && *in.SortOrder != "asc" && *in.SortOrder != "desc" {
		return nil, invalidParam("SortOrder %q is not accepted: asc or desc", *in.SortOrder)
	}
	recs, err := jsonrec.List[secretRecord](ctx, s.st, Prefix)
	if err != nil {
		return nil, err
	}
	planned := in.IncludePlannedDeletion != nil && *in.IncludePlannedDeletion
	var keep []*secretRecord
	for _, r := range recs {
		if s.expired(r) {
			s.purge(ctx, r.Name)
			continue
		}
		if !r.DeletionDate.IsZero() && !planned || !matchesFilters(r, in.Filters) {
			continue
		}
		keep = append(keep, r)
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].Name < keep[j].Name })
	if in.SortOrder != nil && *in.SortOrder == "desc" {
		slices.Reverse(keep)
	}
	start := 0
	if in.NextToken != nil && *in.NextToken != "" {
		start = slices.IndexFunc(keep, func(r *secretRecord) bool { return r.Name == *in.NextToken })
		if start < 0 {
			return nil, newError(CodeInvalidNextToken, errdefs.ErrInvalidArgument,
				"NextToken %q is not one this API gave, or its secret is gone: list again without NextToken", *in.NextToken)
		}
	}
	out := &ListSecretsOutput{SecretList: []DescribeSecretOutput{}}
	for i := start; i < len(keep); i++ {
		if len(out.SecretList) == limit {
			out.NextToken = &keep[i].Name
			break
		}
		d := describe(keep[i])
		d.SecretVersionsToStages = keep[i].stagesByVersion()
		out.SecretList = append(out.SecretList, d)
	}
	return out, nil
}

func matchesFilters(r *secretRecord, filters []Filter) bool {
	for _, f := range filters {
		var fields []string
		switch *f.Key {
		case "name":
			fields = []string{r.Name}
		case "description":
			fields = []string{r.Description}
		case "tag-key", "tag-value", "all":
			for _, t := range r.Tags {
				if *f.Key != "tag-value" {
					fields = append(fields, deref(t.Key))
				}
				if *f.Key != "tag-key" {
					fields = append(fields, deref(t.Value))
				}
			}
			if *f.Key == "all" {
				fields = append(fields, r.Name, r.Description)
			}
		}
		ok := false
		for _, v := range f.Values {
			want, negate := strings.CutPrefix(v, "!")
			hit := slices.ContainsFunc(fields, func(x string) bool { return strings.HasPrefix(strings.ToLower(x), strings.ToLower(want)) })
			if hit != negate {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// DeleteSecretInput is DeleteSecret's request.
type DeleteSecretInput struct {
	SecretId                   *string `json:"SecretId"`
	RecoveryWindowInDays       *int64  `json:"RecoveryWindowInDays"`
	ForceDeleteWithoutRecovery *bool   `json:"ForceDeleteWithoutRecovery"`
}

// DeleteSecretOutput is DeleteSecret's answer.
type DeleteSecretOutput struct {
	ARN          string `json:"ARN"`
	Name         string `json:"Name"`
	DeletionDate *epoch `json:"DeletionDate,omitempty"`
}

// DeleteSecret schedules the secret's deletion after a recovery window
// (7 to 30 days, 30 by default), or deletes it at once with
// ForceDeleteWithoutRecovery. A secret whose window is over is gone.
func (s *Service) DeleteSecret(ctx context.Context, in *DeleteSecretInput) (*DeleteSecretOutput, error) {
	force := in.ForceDeleteWithoutRecovery != nil && *in.ForceDeleteWithoutRecovery
	days := int64(defaultRecoveryDays)
	if in.RecoveryWindowInDays != nil {
		if force {
			return nil, invalidParam("You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays: give one of the two")
		}
		days = *in.RecoveryWindowInDays
		if days < minRecoveryDays || days > maxRecoveryDays {
			return nil, invalidParam("RecoveryWindowInDays %d is out of range: accepted values are %d to %d (or ForceDeleteWithoutRecovery)", days, minRecoveryDays, maxRecoveryDays)
		}
	}
	ref, err := s.resolveSecretID(ctx, deref(in.SecretId))
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	var gone secretRecord
	r, err := jsonrec.Update(ctx, s.st, Prefix+ref.name, func(old *secretRecord) (*secretRecord, error) {
		if old == nil || s.expired(old) || ref.arn != "" && old.ARN != ref.arn {
			return nil, notFoundSecret(ref.id)
		}
		if force {
			gone = *old
			return nil, nil
		}
		if !old.DeletionDate.IsZero() {
			return nil, newError(CodeInvalidRequest, errdefs.ErrConflict,
				"You can't perform this operation on the secret because it was already scheduled for deletion on %s: RestoreSecret brings it back, ForceDeleteWithoutRecovery deletes it now",
				old.DeletionDate.Format(time.RFC3339))
		}
		old.Deleted = now
		old.DeletionDate = now.Add(time.Duration(days) * 24 * time.Hour)
		return old, nil
	})
	if err != nil {
		return nil, err
	}
	if r == nil {
		s.log.Info("secret deleted without recovery", "arn", gone.ARN)
		return &DeleteSecretOutput{ARN: gone.ARN, Name: gone.Name, DeletionDate: epochOf(now)}, nil
	}
	s.log.Info("secret scheduled for deletion", "arn", r.ARN, "deletion_date", r.DeletionDate)
	return &DeleteSecretOutput{ARN: r.ARN, Name: r.Name, DeletionDate: epochOf(r.DeletionDate)}, nil
}

// RestoreSecretInput is RestoreSecret's request.
type RestoreSecretInput struct {
	SecretId *string `json:"SecretId"`
}

// RestoreSecretOutput is RestoreSecret's answer.
type RestoreSecretOutput struct {
	ARN  string `json:"ARN"`
	Name string `json:"Name"`
}

// RestoreSecret cancels a scheduled deletion.
func (s *Service) RestoreSecret(ctx context.Context, in *RestoreSecretInput) (*RestoreSecretOutput, error) {
	ref, err := s.resolveSecretID(ctx, deref(in.SecretId))
	if err != nil {
		return nil, err
	}
	r, err := s.updateSecret(ctx, ref, func(r *secretRecord) error {
		r.Deleted, r.DeletionDate = time.Time{}, time.Time{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &RestoreSecretOutput{ARN: r.ARN, Name: r.Name}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
