package auth

import (
	"context"
	"reflect"
	"testing"
	"time"

	"vessel.dev/vessel/internal/errdefs"
)

func TestKeyAllows(t *testing.T) {
	for _, tc := range []struct {
		key    Key
		action string
		want   bool
	}{
		{Key{}, "ecs:RunTask", true},
		{Key{Policy: PolicyAdmin}, "vessel:CreateCredential", true},
		{Key{Policy: PolicyOperator}, "ecs:RunTask", true},
		{Key{Policy: PolicyOperator}, "vessel:CreateCredential", false},
		{Key{Policy: PolicyOperator}, "vessel:CreateJoinToken", false},
		{Key{Policy: PolicyOperator}, "vessel:RevokeHost", false},
		{Key{Policy: PolicyOperator}, "vessel:RemoveHost", false},
		{Key{Policy: PolicyOperator}, "vessel:DrainHost", true},
		{Key{Policy: PolicyReadOnly}, "vessel:DescribeHost", true},
		{Key{Policy: PolicyReadOnly}, "vessel:DrainHost", false},
		{Key{Policy: PolicyOperator}, "vessel-agent:RegisterHost", false},
		{Key{Policy: PolicyReadOnly}, "ecs:DescribeTasks", true},
		{Key{Policy: PolicyReadOnly}, "ecs:ListTasks", true},
		{Key{Policy: PolicyReadOnly}, "ecs:RunTask", false},
		{Key{Policy: PolicyReadOnly}, "eks:CreateFargateProfile", false},
		{Key{Policy: PolicyCustom, Allow: []string{"ecs:RunTask", "eks:Describe*"}}, "ecs:RunTask", true},
		{Key{Policy: PolicyCustom, Allow: []string{"ecs:RunTask", "eks:Describe*"}}, "eks:DescribeFargateProfile", true},
		{Key{Policy: PolicyCustom, Allow: []string{"ecs:RunTask"}}, "ecs:StopTask", false},
		{Key{Policy: PolicyCustom, Allow: []string{"vessel-agent:*"}}, "vessel-agent:RegisterHost", false},
		{Key{Policy: PolicyCustom, Allow: []string{"*"}}, "vessel-agent:RegisterHost", false},
		{Key{Policy: PolicyHost, HostID: "h1"}, "vessel-agent:ReportStatus", true},
		{Key{Policy: PolicyHost, HostID: "h1"}, "ecs:ListTasks", false},
		{Key{Policy: "bogus"}, "ecs:ListTasks", false},
	} {
		if got := tc.key.Allows(tc.action); got != tc.want {
			t.Errorf("policy %q allow %v: Allows(%q) = %v, want %v", tc.key.Policy, tc.key.Allow, tc.action, got, tc.want)
		}
	}
}

func TestStaticKeyring(t *testing.T) {
	ctx := context.Background()
	r := NewStaticKeyring(testKey)
	if k, err := r.Lookup(ctx, testKey.AccessKeyID); err != nil || !reflect.DeepEqual(k, testKey) {
		t.Fatalf("Lookup = %+v, %v", k, err)
	}
	if _, err := r.Lookup(ctx, "AKIANOPE"); !errdefs.IsNotFound(err) {
		t.Fatalf("Lookup of an unknown key: %v, want not found", err)
	}
	k2, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k2.Policy = PolicyReadOnly
	if err := r.Put(ctx, k2); err != nil {
		t.Fatal(err)
	}
	if keys, _ := r.List(ctx); len(keys) != 2 {
		t.Fatalf("List = %d keys, want 2", len(keys))
	}
	if err := r.Delete(ctx, k2.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, k2.AccessKeyID); !errdefs.IsNotFound(err) {
		t.Fatalf("second Delete: %v, want not found", err)
	}
	if err := r.Put(ctx, Key{AccessKeyID: "x"}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Put of a key without secret: %v, want invalid argument", err)
	}
}

// TestVerifierSeesRotatedSecret: a key's secret replaced in the keyring
// (same access key ID) stops verifying at once.
func TestVerifierSeesRotatedSecret(t *testing.T) {
	ring := NewStaticKeyring(testKey)
	srv := newServer(t, VerifierConfig{Keyring: ring})
	now := time.Now()
	if res := send(t, signedReq(t, srv.URL, testKey, []byte("{}"), now)); res.status != 200 {
		t.Fatalf("before rotation: %d %s %s", res.status, res.code, res.message)
	}
	rotated := testKey
	rotated.SecretAccessKey = "cm90YXRlZC1yb3RhdGVkLXJvdGF0ZWQtcm90YXRl"
	if err := ring.Put(context.Background(), rotated); err != nil {
		t.Fatal(err)
	}
	if res := send(t, signedReq(t, srv.URL, testKey, []byte("{}"), now)); res.status != 403 || res.code != CodeInvalidSignature {
		t.Fatalf("old secret after rotation: %d %s %s, want 403 %s", res.status, res.code, res.message, CodeInvalidSignature)
	}
	if res := send(t, signedReq(t, srv.URL, rotated, []byte("{}"), now)); res.status != 200 {
		t.Fatalf("new secret: %d %s %s", res.status, res.code, res.message)
	}
}
