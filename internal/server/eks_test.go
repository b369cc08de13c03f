package server_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"

	"vessel.dev/vessel/internal/auth"
	"vessel.dev/vessel/internal/testutil"
)

const role = "arn:aws:iam::000000000000:role/pods"

func selector(ns string, labels map[string]string) ekstypes.FargateProfileSelector {
	return ekstypes.FargateProfileSelector{Namespace: aws.String(ns), Labels: labels}
}

func TestFargateProfiles(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	created, err := e.eks.CreateFargateProfile(c, &eks.CreateFargateProfileInput{ClusterName: aws.String("default"),
		FargateProfileName: aws.String("web"), PodExecutionRoleArn: aws.String(role),
		Selectors: []ekstypes.FargateProfileSelector{selector("default", map[string]string{"app": "web"}), selector("prod-*", nil)},
		Tags:      map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	p := created.FargateProfile
	if p.Status != ekstypes.FargateProfileStatusCreating || aws.ToString(p.ClusterName) != "default" ||
		len(p.Selectors) != 2 || len(p.Subnets) != 1 || p.CreatedAt == nil || !strings.Contains(aws.ToString(p.FargateProfileArn), ":fargateprofile/default/web/") {
		t.Fatalf("CreateFargateProfile = %+v", p)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		d, err := e.eks.DescribeFargateProfile(c, &eks.DescribeFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("web")})
		if err != nil {
			t.Fatal(err)
		}
		if d.FargateProfile.Status != ekstypes.FargateProfileStatusActive {
			return fmt.Errorf("profile still %s", d.FargateProfile.Status)
		}
		if d.FargateProfile.Selectors[0].Labels["app"] != "web" || d.FargateProfile.Tags["team"] != "a" {
			t.Fatalf("profile lost its selectors or tags: %+v", d.FargateProfile)
		}
		return nil
	})

	six := []ekstypes.FargateProfileSelector{}
	for i := 0; i < 6; i++ {
		six = append(six, selector(fmt.Sprintf("ns%d", i), nil))
	}
	cases := []struct {
		name  string
		in    *eks.CreateFargateProfileInput
		code  string
		parts []string
	}{
		{"six selectors", &eks.CreateFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("p6"),
			PodExecutionRoleArn: aws.String(role), Selectors: six}, "InvalidParameterException", []string{"5"}},
		{"selector without namespace", &eks.CreateFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("p1"),
			PodExecutionRoleArn: aws.String(role), Selectors: []ekstypes.FargateProfileSelector{{Labels: map[string]string{"a": "b"}}}},
			"InvalidParameterException", []string{"namespace"}},
		{"no selectors", &eks.CreateFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("p0"),
			PodExecutionRoleArn: aws.String(role)}, "InvalidParameterException", []string{"selector"}},
		{"unknown cluster", &eks.CreateFargateProfileInput{ClusterName: aws.String("ghost"), FargateProfileName: aws.String("p"),
			PodExecutionRoleArn: aws.String(role), Selectors: []ekstypes.FargateProfileSelector{selector("a", nil)}},
			"ResourceNotFoundException", []string{"ghost"}},
		{"same name again (immutable)", &eks.CreateFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("web"),
			PodExecutionRoleArn: aws.String(role), Selectors: []ekstypes.FargateProfileSelector{selector("other", nil)}},
			"ResourceInUseException", []string{"immutable"}},
		{"bad role", &eks.CreateFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("r"),
			PodExecutionRoleArn: aws.String("admin"), Selectors: []ekstypes.FargateProfileSelector{selector("a", nil)}},
			"InvalidParameterException", []string{"role ARN"}},
		{"unknown subnet", &eks.CreateFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("s"),
			PodExecutionRoleArn: aws.String(role), Subnets: []string{"subnet-public"}, Selectors: []ekstypes.FargateProfileSelector{selector("a", nil)}},
			"InvalidParameterException", []string{"subnet-public"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.eks.CreateFargateProfile(c, tc.in)
			wantAPIError(t, err, tc.code, tc.parts...)
		})
	}

	list, err := e.eks.ListFargateProfiles(c, &eks.ListFargateProfilesInput{ClusterName: aws.String("default")})
	if err != nil || len(list.FargateProfileNames) != 1 || list.FargateProfileNames[0] != "web" {
		t.Fatalf("ListFargateProfiles = %v %v", list, err)
	}
	clusters, err := e.eks.ListClusters(c, &eks.ListClustersInput{})
	if err != nil || len(clusters.Clusters) != 1 || clusters.Clusters[0] != "default" {
		t.Fatalf("EKS ListClusters = %v %v", clusters, err)
	}
	dc, err := e.eks.DescribeCluster(c, &eks.DescribeClusterInput{Name: aws.String("default")})
	if err != nil || dc.Cluster.Status != ekstypes.ClusterStatusActive {
		t.Fatalf("EKS DescribeCluster = %v %v", dc, err)
	}
	_, err = e.eks.DescribeCluster(c, &eks.DescribeClusterInput{Name: aws.String("ghost")})
	wantAPIError(t, err, "ResourceNotFoundException", "ghost")

	del, err := e.eks.DeleteFargateProfile(c, &eks.DeleteFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("web")})
	if err != nil || del.FargateProfile.Status != ekstypes.FargateProfileStatusDeleting {
		t.Fatalf("DeleteFargateProfile = %v %v", del, err)
	}
	_, err = e.eks.CreateFargateProfile(c, &eks.CreateFargateProfileInput{ClusterName: aws.String("default"),
		FargateProfileName: aws.String("next"), PodExecutionRoleArn: aws.String(role),
		Selectors: []ekstypes.FargateProfileSelector{selector("default", nil)}})
	wantAPIError(t, err, "ResourceInUseException", "being deleted")
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := e.eks.DescribeFargateProfile(c, &eks.DescribeFargateProfileInput{ClusterName: aws.String("default"), FargateProfileName: aws.String("web")})
		if apiCode(err) != "ResourceNotFoundException" {
			return fmt.Errorf("deleted profile still there: %v", err)
		}
		return nil
	})
	if _, err := e.eks.CreateFargateProfile(c, &eks.CreateFargateProfileInput{ClusterName: aws.String("default"),
		FargateProfileName: aws.String("next"), PodExecutionRoleArn: aws.String(role),
		Selectors: []ekstypes.FargateProfileSelector{selector("default", nil)}}); err != nil {
		t.Fatalf("creating a profile after the deletion finished: %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, envOptions{noAgent: true})
	c := ctx(t)
	badSecret, badSecretEKS := e.clients(auth.Key{AccessKeyID: e.key.AccessKeyID, SecretAccessKey: "wrong" + e.key.SecretAccessKey[5:]})
	_, err := badSecret.ListClusters(c, &ecs.ListClustersInput{})
	wantAPIError(t, err, "InvalidSignatureException", "signature")
	_, err = badSecretEKS.ListClusters(c, &eks.ListClustersInput{})
	wantAPIError(t, err, "InvalidSignatureException", "signature")
	unknown, _ := e.clients(auth.Key{AccessKeyID: "AKIAUNKNOWNUNKNOWN00", SecretAccessKey: e.key.SecretAccessKey})
	_, err = unknown.ListClusters(c, &ecs.ListClustersInput{})
	wantAPIError(t, err, "UnrecognizedClientException", "AKIAUNKNOWNUNKNOWN00")

	// Unsigned requests, by hand.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	status, code, msg := doRaw(t, req)
	if status != 400 || code != "UnrecognizedClientException" || !strings.Contains(msg, "Signature Version 4") {
		t.Fatalf("unsigned ECS request: %d %s %q", status, code, msg)
	}
	req, _ = http.NewRequest(http.MethodGet, e.url+"/clusters", nil)
	status, code, _ = doRaw(t, req)
	if status != 400 || code != "UnrecognizedClientException" {
		t.Fatalf("unsigned EKS request: %d %s", status, code)
	}
	req, _ = http.NewRequest(http.MethodGet, e.url+"/agent/v1/hosts/h1/assignments", nil)
	status, code, _ = doRaw(t, req)
	if status != 400 || code != "UnrecognizedClientException" {
		t.Fatalf("unsigned agent request: %d %s", status, code)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, envOptions{})
	def := e.register("m", "256", "512", "exit", "0")
	e.waitStatus(e.run(def), "STOPPED")
	resp, err := http.Get(e.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		resp, err := http.Get(e.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		ok := strings.Contains(text, `vessel_tasks{status="STOPPED"} 1`) &&
			strings.Contains(text, "vessel_placements_total 1") &&
			strings.Contains(text, `vessel_api_request_duration_seconds_count{code="200",operation="RunTask"} 1`)
		if !ok {
			return fmt.Errorf("/metrics lacks task counts, placements or API latency:\n%s", text)
		}
		return nil
	})
}
