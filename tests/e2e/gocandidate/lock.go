package main

// MultiClusterLeaseLock: a resourcelock.Interface for client-go's leaderelection elector that
// speaks mclease's lock protocol (mclease_core/kube/_lock.py) against a MultiClusterLease.
//
// Signal, then poll. Create/Update write the candidate into spec with the API server's optimistic
// concurrency (the resourceVersion of the object last seen): only one local candidate holds the
// spec, which is the local election. Then the call waits until the election controller confirms
// it in status: observedGeneration at least the generation this write produced, and
// globalHolderIdentity naming this candidate. An impossible status (observedGeneration above
// metadata.generation) is ignored.
//
// Every call ends by its deadline: C after it started on the monotonic clock (and no later than
// the deadline of the context client-go passes), and a confirmation seen after C is refused.
// C = D - R - P - m with m = max(0.5 s, D/10): client-go's elector acts until at most P + R after
// its last successful call returned, so that call's confirmation keeps it stopped before D after
// its signal, before another cluster can take the global lease over.
//
// One addition to that rule: once a term is confirmed, every later call of the same elector is
// also cut at the term's end, P + R after the last confirmed call returned. client-go with
// ReleaseOnCancel releases (a Get and an Update, up to R more) *before* it cancels the work's
// context, also after a lost term; without the cut the work of a candidate whose API server
// hangs would go on up to R past that bound.

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

const (
	group   = "multicluster.core.cnrm.cloud.google.com"
	version = "v1alpha1"
	plural  = "multiclusterleases"
	kind    = "MultiClusterLease"

	// annotationCandidate is written by mclease's Python lock (callBound, released). This lock
	// never writes it, and drops a stale one: it describes the previous writer of the spec.
	annotationCandidate = "mclease.io/candidate"

	// defaultLeaseDuration is what mclease assumes when spec.leaseDurationSeconds is missing.
	defaultLeaseDuration = 15

	// minCallBound is the shortest bound on one call that leaves time for a write and a
	// confirmation.
	minCallBound = 250 * time.Millisecond
	pollInterval = 20 * time.Millisecond
	microTime    = "2006-01-02T15:04:05.000000Z"
)

var resource = schema.GroupVersionResource{Group: group, Version: version, Resource: plural}

// Timing is a candidate's D, R and P in whole seconds (the spec holds whole seconds).
type Timing struct {
	LeaseDuration, RenewDeadline, RetryPeriod int
}

func (t Timing) margin() time.Duration {
	m := time.Duration(t.LeaseDuration) * time.Second / 10
	if m < 500*time.Millisecond {
		m = 500 * time.Millisecond
	}
	return m
}

// CallBound is C = D - R - P - max(0.5 s, D/10); an error when it is below minCallBound.
func (t Timing) CallBound() (time.Duration, error) {
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	bound := sec(t.LeaseDuration) - sec(t.RenewDeadline) - sec(t.RetryPeriod) - t.margin()
	if bound < minCallBound {
		return bound, fmt.Errorf(
			"lease-duration %ds is too short for renew-deadline %ds and retry-period %ds: the "+
				"lock's call bound C = D - R - P - max(0.5s, D/10) would be %.2fs, below %.2fs, and "+
				"a candidate could still act after another cluster takes over",
			t.LeaseDuration, t.RenewDeadline, t.RetryPeriod, bound.Seconds(), minCallBound.Seconds())
	}
	return bound, nil
}

// CallRecorder is told of every lock call: its monotonic start and end, answer and kind
// (get, create, update; release for an Update with an empty holder).
type CallRecorder func(start, end float64, ok bool, kind string)

// Lock implements resourcelock.Interface over a MultiClusterLease.
type Lock struct {
	client    dynamic.ResourceInterface
	namespace string
	name      string
	identity  string
	timing    Timing
	callBound time.Duration
	record    CallRecorder

	mu       sync.Mutex
	lastSeen *unstructured.Unstructured
	// termEnd: P + R after the last confirmed call returned; zero when no term is held.
	termEnd time.Time
	// released: an empty holder was written since the last confirmed call.
	released bool
}

var _ resourcelock.Interface = (*Lock)(nil)

// NewLock builds the lock; the timings must give a call bound of at least minCallBound.
func NewLock(client dynamic.Interface, namespace, name, identity string, timing Timing,
	record CallRecorder) (*Lock, error) {
	bound, err := timing.CallBound()
	if err != nil {
		return nil, err
	}
	if record == nil {
		record = func(float64, float64, bool, string) {}
	}
	return &Lock{
		client:    client.Resource(resource).Namespace(namespace),
		namespace: namespace,
		name:      name,
		identity:  identity,
		timing:    timing,
		callBound: bound,
		record:    record,
	}, nil
}

// CallBoundSeconds is C, for logging.
func (l *Lock) CallBoundSeconds() float64 { return l.callBound.Seconds() }

// EndTerm: the elector stopped leading (OnStoppedLeading); its successor campaigns anew.
func (l *Lock) EndTerm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.termEnd = time.Time{}
}

// Released tells whether an empty holder was written after the last confirmed call.
func (l *Lock) Released() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.released
}

// Identity implements resourcelock.Interface.
func (l *Lock) Identity() string { return l.identity }

// Describe implements resourcelock.Interface.
func (l *Lock) Describe() string { return fmt.Sprintf("multiclusterlease/%s/%s", l.namespace, l.name) }

// RecordEvent implements resourcelock.Interface: no Events.
func (l *Lock) RecordEvent(string) {}

// callContext bounds one call: C after its start, the term's end while a term is held, and the
// caller's own deadline.
func (l *Lock) callContext(ctx context.Context, start time.Time) (context.Context, context.CancelFunc, error) {
	deadline := start.Add(l.callBound)
	l.mu.Lock()
	end := l.termEnd
	l.mu.Unlock()
	if !end.IsZero() {
		if !start.Before(end) {
			return nil, nil, fmt.Errorf("%s: the term ended %.2fs ago (P + R after the last "+
				"confirmed call); refusing the call until the elector stops leading",
				l.Describe(), start.Sub(end).Seconds())
		}
		if end.Before(deadline) {
			deadline = end
		}
	}
	c, cancel := context.WithDeadline(ctx, deadline)
	return c, cancel, nil
}

// Get implements resourcelock.Interface.
func (l *Lock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	started := monotonic()
	record, raw, err := l.get(ctx)
	l.record(started, monotonic(), err == nil, "get")
	return record, raw, err
}

func (l *Lock) get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	callCtx, cancel, err := l.callContext(ctx, time.Now())
	if err != nil {
		l.setLastSeen(nil)
		return nil, nil, err
	}
	defer cancel()
	obj, err := l.client.Get(callCtx, l.name, metav1.GetOptions{})
	if err != nil {
		l.setLastSeen(nil)
		return nil, nil, err // a 404 stays a NotFound: client-go then calls Create
	}
	record := recordFrom(obj)
	raw, err := json.Marshal(record)
	if err != nil {
		l.setLastSeen(nil)
		return nil, nil, err
	}
	l.setLastSeen(obj)
	return record, raw, nil
}

// Create implements resourcelock.Interface: POST a new object with our signal, then poll.
func (l *Lock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	started := monotonic()
	err := l.create(ctx, ler)
	l.record(started, monotonic(), err == nil, "create")
	return err
}

func (l *Lock) create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	if err := l.checkRecord(ler); err != nil {
		return err
	}
	callCtx, cancel, err := l.callContext(ctx, start)
	if err != nil {
		return err
	}
	defer cancel()
	obj := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": group + "/" + version,
		"kind":       kind,
		"metadata": map[string]interface{}{
			"name":      l.name,
			"namespace": l.namespace,
		},
		"spec": l.signalSpec(),
	}}
	written, err := l.client.Create(callCtx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("%s: create failed: %w", l.Describe(), err)
	}
	l.setLastSeen(written)
	return l.awaitConfirmation(callCtx, start, written)
}

// Update implements resourcelock.Interface: PUT our signal over the object last seen (keeping
// its resourceVersion: a concurrent writer makes it fail with 409), then poll. An empty
// HolderIdentity is client-go's release (ReleaseOnCancel).
func (l *Lock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	started := monotonic()
	if ler.HolderIdentity == "" {
		wrote, err := l.release(ctx, ler)
		l.record(started, monotonic(), wrote && err == nil, "release")
		return err
	}
	err := l.update(ctx, ler)
	l.record(started, monotonic(), err == nil, "update")
	return err
}

func (l *Lock) update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	if err := l.checkRecord(ler); err != nil {
		return err
	}
	callCtx, cancel, err := l.callContext(ctx, start)
	if err != nil {
		return err
	}
	defer cancel()
	body, err := l.bodyFromLastSeen()
	if err != nil {
		return err
	}
	for key, value := range l.signalSpec() {
		if err := unstructured.SetNestedField(body.Object, value, "spec", key); err != nil {
			return err
		}
	}
	written, err := l.client.Update(callCtx, body, metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("%s: signal not written, another writer changed the object "+
				"(the local election): %w", l.Describe(), err)
		}
		return fmt.Errorf("%s: signal not written: %w", l.Describe(), err)
	}
	l.setLastSeen(written)
	return l.awaitConfirmation(callCtx, start, written)
}

// release writes an empty holder (if the spec still names us) and returns without polling.
// It writes no annotation: the controller must treat it as a release by a client that may
// still be stopping its work (client-go cancels the work only after the release).
func (l *Lock) release(ctx context.Context, ler resourcelock.LeaderElectionRecord) (bool, error) {
	start := time.Now()
	callCtx, cancel, err := l.callContext(ctx, start)
	if err != nil {
		return false, err
	}
	defer cancel()
	body, err := l.bodyFromLastSeen()
	if err != nil {
		return false, err
	}
	holder, _, _ := unstructured.NestedString(body.Object, "spec", "holderIdentity")
	if holder != l.identity {
		log.Printf("%s: not releasing: the spec names %q, not us", l.Describe(), holder)
		return false, nil
	}
	spec := map[string]interface{}{
		"holderIdentity":       "",
		"renewTime":            time.Now().UTC().Format(microTime),
		"leaseDurationSeconds": int64(ler.LeaseDurationSeconds),
	}
	for key, value := range spec {
		if err := unstructured.SetNestedField(body.Object, value, "spec", key); err != nil {
			return false, err
		}
	}
	written, err := l.client.Update(callCtx, body, metav1.UpdateOptions{})
	if err != nil {
		return false, fmt.Errorf("%s: release not written: %w", l.Describe(), err)
	}
	l.mu.Lock()
	l.lastSeen = written
	l.released = true
	l.mu.Unlock()
	return true, nil
}

func (l *Lock) checkRecord(ler resourcelock.LeaderElectionRecord) error {
	if ler.HolderIdentity != l.identity {
		return fmt.Errorf("%s: asked to signal for %q, but this lock is %q",
			l.Describe(), ler.HolderIdentity, l.identity)
	}
	if ler.LeaseDurationSeconds != l.timing.LeaseDuration {
		return fmt.Errorf("%s: the elector's lease duration (%ds) differs from the lock's (%ds); "+
			"give both the same timings", l.Describe(), ler.LeaseDurationSeconds, l.timing.LeaseDuration)
	}
	return nil
}

func (l *Lock) signalSpec() map[string]interface{} {
	return map[string]interface{}{
		"holderIdentity":       l.identity,
		"renewTime":            time.Now().UTC().Format(microTime),
		"leaseDurationSeconds": int64(l.timing.LeaseDuration),
		"renewDeadlineSeconds": int64(l.timing.RenewDeadline),
		"retryPeriodSeconds":   int64(l.timing.RetryPeriod),
	}
}

// bodyFromLastSeen is the object last seen without status and without a stale candidate note.
func (l *Lock) bodyFromLastSeen() (*unstructured.Unstructured, error) {
	l.mu.Lock()
	seen := l.lastSeen
	l.mu.Unlock()
	if seen == nil {
		return nil, fmt.Errorf("%s: no object seen (an Update without a successful Get)", l.Describe())
	}
	if seen.GetDeletionTimestamp() != nil {
		return nil, fmt.Errorf("%s: the object is being deleted; not writing", l.Describe())
	}
	body := seen.DeepCopy()
	delete(body.Object, "status")
	if annotations := body.GetAnnotations(); annotations != nil {
		if _, found := annotations[annotationCandidate]; found {
			delete(annotations, annotationCandidate)
			body.SetAnnotations(annotations)
		}
	}
	return body, nil
}

func (l *Lock) setLastSeen(obj *unstructured.Unstructured) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastSeen = obj
}

type verdict int

const (
	pending verdict = iota
	confirmed
	overtaken
)

// awaitConfirmation polls every 20 ms until status confirms the generation written, another
// local candidate overtook the spec, or the call's deadline.
func (l *Lock) awaitConfirmation(ctx context.Context, start time.Time, written *unstructured.Unstructured) error {
	generation := written.GetGeneration()
	for {
		if time.Since(start) >= l.callBound {
			return fmt.Errorf("%s: no confirmation of generation %d within %.2fs; not leading",
				l.Describe(), generation, l.callBound.Seconds())
		}
		obj, err := l.client.Get(ctx, l.name, metav1.GetOptions{})
		if err == nil {
			switch judge(obj, generation, l.identity) {
			case overtaken:
				l.setLastSeen(obj)
				return fmt.Errorf("%s: another local candidate wrote the spec after us", l.Describe())
			case confirmed:
				if elapsed := time.Since(start); elapsed > l.callBound {
					return fmt.Errorf("%s: confirmation arrived after %.2fs, past the bound %.2fs; refused",
						l.Describe(), elapsed.Seconds(), l.callBound.Seconds())
				}
				now := time.Now()
				l.mu.Lock()
				l.lastSeen = obj
				l.termEnd = now.Add(time.Duration(l.timing.RetryPeriod+l.timing.RenewDeadline) * time.Second)
				l.released = false
				l.mu.Unlock()
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: waiting for the confirmation of generation %d: %w",
				l.Describe(), generation, ctx.Err())
		}
		pause := pollInterval
		if left := l.callBound - time.Since(start); left < pause {
			pause = left
		}
		if pause > 0 {
			timer := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				timer.Stop()
			case <-timer.C:
			}
		}
	}
}

func judge(obj *unstructured.Unstructured, generation int64, identity string) verdict {
	holder, _, _ := unstructured.NestedString(obj.Object, "spec", "holderIdentity")
	if holder != identity {
		return overtaken
	}
	status := possibleStatus(obj)
	observed, ok := nestedInt(status, "observedGeneration")
	if !ok || observed < generation {
		return pending // not acted on our signal yet (or an impossible status, ignored)
	}
	if global, _, _ := unstructured.NestedString(status, "globalHolderIdentity"); global == identity {
		return confirmed
	}
	return pending // processed, someone else leads; a later reconcile may still confirm us
}

// possibleStatus is the object's status, or an empty one when it claims a generation that does
// not exist yet (nobody wrote it in good faith).
func possibleStatus(obj *unstructured.Unstructured) map[string]interface{} {
	status, ok := obj.Object["status"].(map[string]interface{})
	if !ok {
		return map[string]interface{}{}
	}
	if observed, found := nestedInt(status, "observedGeneration"); found && observed > obj.GetGeneration() {
		return map[string]interface{}{}
	}
	return status
}

// recordFrom is what client-go's elector sees: the global holder as status names it, or, when
// status names nobody, the local candidate whose signal is pending in the spec.
func recordFrom(obj *unstructured.Unstructured) *resourcelock.LeaderElectionRecord {
	status := possibleStatus(obj)
	holder, _, _ := unstructured.NestedString(status, "globalHolderIdentity")
	if holder == "" {
		holder, _, _ = unstructured.NestedString(obj.Object, "spec", "holderIdentity")
	}
	duration, ok := nestedInt(obj.Object, "spec", "leaseDurationSeconds")
	if !ok || duration <= 0 {
		duration = defaultLeaseDuration
	}
	record := &resourcelock.LeaderElectionRecord{
		HolderIdentity:       holder,
		LeaseDurationSeconds: int(duration),
	}
	if text, _, _ := unstructured.NestedString(status, "globalRenewTime"); text != "" {
		if moment, err := time.Parse(time.RFC3339Nano, text); err == nil {
			record.RenewTime = metav1.NewTime(moment)
			record.AcquireTime = metav1.NewTime(moment)
		}
	}
	if transitions, ok := nestedInt(status, "globalLeaseTransitions"); ok {
		record.LeaderTransitions = int(transitions)
	}
	return record
}

// nestedInt reads an integer field of an unstructured object, whatever number type decoding
// gave it.
func nestedInt(obj map[string]interface{}, fields ...string) (int64, bool) {
	value, found, err := unstructured.NestedFieldNoCopy(obj, fields...)
	if err != nil || !found {
		return 0, false
	}
	switch v := value.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case int32:
		return int64(v), true
	case float64:
		return int64(v), true
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}
