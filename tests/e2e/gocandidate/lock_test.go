package main

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func lease(generation int64, spec, status map[string]interface{}) *unstructured.Unstructured {
	obj := map[string]interface{}{
		"metadata": map[string]interface{}{"name": "l", "namespace": "n", "generation": generation},
		"spec":     spec,
	}
	if status != nil {
		obj["status"] = status
	}
	return &unstructured.Unstructured{Object: obj}
}

func TestCallBound(t *testing.T) {
	bound, err := Timing{6, 2, 1}.CallBound()
	if err != nil || bound != 2400*time.Millisecond {
		t.Fatalf("D=6 R=2 P=1: got %v, %v; want 2.4s", bound, err)
	}
	bound, err = Timing{20, 10, 2}.CallBound()
	if err != nil || bound != 6*time.Second {
		t.Fatalf("D=20 R=10 P=2: got %v, %v; want 6s", bound, err)
	}
	if _, err := (Timing{3, 2, 1}).CallBound(); err == nil {
		t.Fatal("D=3 R=2 P=1 leaves no call bound and must be refused")
	}
}

func TestJudge(t *testing.T) {
	ours := map[string]interface{}{"holderIdentity": "a"}
	cases := []struct {
		name string
		obj  *unstructured.Unstructured
		verdict
	}{
		{"no status yet", lease(3, ours, nil), pending},
		{"stale status", lease(3, ours, map[string]interface{}{
			"observedGeneration": int64(2), "globalHolderIdentity": "a"}), pending},
		{"confirmed", lease(3, ours, map[string]interface{}{
			"observedGeneration": int64(3), "globalHolderIdentity": "a"}), confirmed},
		{"processed, another cluster holds", lease(3, ours, map[string]interface{}{
			"observedGeneration": int64(3), "globalHolderIdentity": "west/b"}), pending},
		{"forged: observedGeneration above generation", lease(3, ours, map[string]interface{}{
			"observedGeneration": int64(9), "globalHolderIdentity": "a"}), pending},
		{"overtaken by another local candidate", lease(4, map[string]interface{}{
			"holderIdentity": "b"}, map[string]interface{}{
			"observedGeneration": int64(4), "globalHolderIdentity": "a"}), overtaken},
	}
	for _, c := range cases {
		if got := judge(c.obj, 3, "a"); got != c.verdict {
			t.Errorf("%s: got %v, want %v", c.name, got, c.verdict)
		}
	}
}

func TestRecordFrom(t *testing.T) {
	spec := map[string]interface{}{"holderIdentity": "a", "leaseDurationSeconds": int64(6)}
	r := recordFrom(lease(2, spec, map[string]interface{}{
		"observedGeneration": int64(2), "globalHolderIdentity": "west/b",
		"globalRenewTime": "2026-12-01T21:13:15.123456Z", "globalLeaseTransitions": int64(4)}))
	if r.HolderIdentity != "west/b" || r.LeaseDurationSeconds != 6 || r.LeaderTransitions != 4 ||
		r.RenewTime.UTC().Format(microTime) != "2026-12-01T21:13:15.123456Z" ||
		!r.AcquireTime.Equal(&r.RenewTime) {
		t.Errorf("global holder: got %+v", r)
	}
	r = recordFrom(lease(2, spec, nil))
	if r.HolderIdentity != "a" || !r.RenewTime.IsZero() {
		t.Errorf("pending local signal: got %+v", r)
	}
	r = recordFrom(lease(2, spec, map[string]interface{}{
		"observedGeneration": int64(5), "globalHolderIdentity": "x", "globalLeaseTransitions": int64(7)}))
	if r.HolderIdentity != "a" || r.LeaderTransitions != 0 {
		t.Errorf("forged status must be ignored: got %+v", r)
	}
	r = recordFrom(lease(1, map[string]interface{}{}, nil))
	if r.HolderIdentity != "" || r.LeaseDurationSeconds != defaultLeaseDuration {
		t.Errorf("empty: got %+v", r)
	}
}

func TestIdentityProblem(t *testing.T) {
	for _, bad := range []string{"", "a/b", "a\nb", "a\u200fb"} {
		if identityProblem(bad) == "" {
			t.Errorf("%q must be refused", bad)
		}
	}
	for _, good := range []string{"app-0", "pod 7", "é"} {
		if p := identityProblem(good); p != "" {
			t.Errorf("%q refused: %s", good, p)
		}
	}
}
