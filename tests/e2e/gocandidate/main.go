// Command mclease-go-candidate is an application pod, as a process, for mclease's end-to-end
// tests: client-go's tools/leaderelection elector, unchanged, with a resourcelock.Interface of
// its own (lock.go) that speaks mclease's lock protocol against a MultiClusterLease.
//
// It is the Go twin of devtools/mclease_dev/candidate.py and records the same files. It campaigns forever
// (a new LeaderElector after each lost term). While it leads, its "work" appends a heartbeat line
// "<CLOCK_MONOTONIC seconds> <identity> <term>" to --heartbeats every 20 ms. --events gets, on
// the same clock:
//
//	call <start> <end> <ok> <get|create|update|release>  every lock call; for create and update
//	                                                     ok means confirmed; release is client-go's
//	                                                     Update with an empty holder (ok: written)
//	started <t> <term>                                   OnStartedLeading ran
//	stopped <t> <term>                                   OnStoppedLeading ran, the work has stopped
//	released <t> <ok>                                    after SIGTERM/SIGINT, once the work has
//	                                                     stopped: whether client-go's release wrote
//	                                                     the empty holder
//
// SIGTERM/SIGINT cancels the elector's context: client-go (ReleaseOnCancel) releases, then
// cancels the work's context; the process exits 0 once the heartbeats have stopped.
//
// Not for: production use; it is a test double of an application.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/util/flowcontrol"
)

const heartbeatInterval = 20 * time.Millisecond

// monotonic reads CLOCK_MONOTONIC in seconds, the clock of Python's time.monotonic().
func monotonic() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func stamp() string { return fmt.Sprintf("%.6f", monotonic()) }

// Events appends lines to a file, each written at once.
type Events struct {
	mu   sync.Mutex
	file *os.File
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

func (e *Events) Write(fields ...interface{}) {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = fmt.Sprint(f)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.file.WriteString(strings.Join(parts, " ") + "\n"); err != nil {
		log.Printf("writing an event: %v", err)
	}
}

// Term is one elector's work: heartbeats from OnStartedLeading until its context is done.
// OnStartedLeading runs in a goroutine client-go starts, which may begin only after the term
// already ended; Stop makes such a late start a no-op.
type Term struct {
	number     int
	identity   string
	heartbeats string
	events     *Events

	mu      sync.Mutex
	started bool
	stopped bool
	done    chan struct{}
}

func newTerm(number int, identity, heartbeats string, events *Events) *Term {
	return &Term{number: number, identity: identity, heartbeats: heartbeats, events: events,
		done: make(chan struct{})}
}

// Run is OnStartedLeading.
func (t *Term) Run(ctx context.Context) {
	t.mu.Lock()
	if t.stopped || ctx.Err() != nil {
		t.mu.Unlock()
		return
	}
	t.started = true
	t.mu.Unlock()
	defer close(t.done)
	t.events.Write("started", stamp(), t.number)
	out, err := openAppend(t.heartbeats)
	if err != nil {
		log.Printf("term %d: cannot open the heartbeat file: %v", t.number, err)
		return
	}
	defer out.Close()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return
		}
		line := fmt.Sprintf("%s %s %d\n", stamp(), t.identity, t.number)
		if _, err := out.WriteString(line); err != nil {
			log.Printf("term %d: writing a heartbeat: %v", t.number, err)
		}
		timer.Reset(heartbeatInterval)
	}
}

// Stop returns once this term can write no further heartbeat (its context must be done, or
// it must never have started). It tells whether the term had started.
func (t *Term) Stop() bool {
	t.mu.Lock()
	t.stopped = true
	started := t.started
	t.mu.Unlock()
	if started {
		<-t.done
	}
	return started
}

// OnStopped is OnStoppedLeading: client-go calls it after cancelling the work's context (and
// also when the elector never led).
func (t *Term) OnStopped() {
	if t.Stop() {
		t.events.Write("stopped", stamp(), t.number)
	}
}

type options struct {
	kubeconfig, namespace, name, identity, heartbeats, events string
	timing                                                    Timing
	releaseOnCancel                                           bool
}

func usageError(fs *flag.FlagSet, format string, args ...interface{}) int {
	fmt.Fprintf(os.Stderr, "mclease-go-candidate: "+format+"\n", args...)
	fmt.Fprintf(os.Stderr, "run %s --help for the flags\n", fs.Name())
	return 2
}

func identityProblem(identity string) string {
	if identity == "" {
		return "it is empty"
	}
	if n := len([]rune(identity)); n > 1024 {
		return fmt.Sprintf("it is %d characters long, the limit is 1024", n)
	}
	if strings.Contains(identity, "/") {
		return "it contains '/', which marks another cluster's holder"
	}
	for _, r := range identity {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs, unicode.Zl, unicode.Zp) ||
			!unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z) {
			return fmt.Sprintf("it contains the control or format character U+%04X", r)
		}
	}
	return ""
}

func parse(args []string) (*options, int) {
	fs := flag.NewFlagSet("mclease-go-candidate", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	o := &options{}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the candidate's cluster (required)")
	fs.StringVar(&o.namespace, "namespace", "default", "namespace of the MultiClusterLease")
	fs.StringVar(&o.name, "name", "", "name of the MultiClusterLease (required)")
	fs.StringVar(&o.identity, "identity", "", "this candidate's identity (required)")
	fs.StringVar(&o.heartbeats, "heartbeats", "", "file the work appends heartbeat lines to (required)")
	fs.StringVar(&o.events, "events", "", "file of lock calls and callbacks (required)")
	fs.IntVar(&o.timing.LeaseDuration, "lease-duration", 6, "D, whole seconds")
	fs.IntVar(&o.timing.RenewDeadline, "renew-deadline", 2, "R, whole seconds")
	fs.IntVar(&o.timing.RetryPeriod, "retry-period", 1, "P, whole seconds")
	fs.BoolVar(&o.releaseOnCancel, "release-on-cancel", true,
		"client-go's ReleaseOnCancel: write an empty holder when stopped by SIGTERM/SIGINT")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: %s --kubeconfig PATH --name NAME --identity ID "+
			"--heartbeats FILE --events FILE [flags]\n\n"+
			"An application pod for mclease's end-to-end tests: client-go's leader elector with a\n"+
			"MultiClusterLease lock. Exit codes: 0 after SIGTERM/SIGINT, 2 for usage errors.\n\n",
			fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if fs.NArg() > 0 {
		return nil, usageError(fs, "unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	for _, required := range []struct{ flag, value string }{
		{"--kubeconfig", o.kubeconfig}, {"--name", o.name}, {"--identity", o.identity},
		{"--heartbeats", o.heartbeats}, {"--events", o.events}, {"--namespace", o.namespace},
	} {
		if required.value == "" {
			return nil, usageError(fs, "%s is required", required.flag)
		}
	}
	if problem := identityProblem(o.identity); problem != "" {
		return nil, usageError(fs, "invalid --identity %q: %s", o.identity, problem)
	}
	t := o.timing
	switch {
	case t.LeaseDuration < 1 || t.RenewDeadline < 1 || t.RetryPeriod < 1:
		return nil, usageError(fs, "--lease-duration, --renew-deadline and --retry-period must be "+
			"at least 1 second, got %d, %d, %d", t.LeaseDuration, t.RenewDeadline, t.RetryPeriod)
	case t.LeaseDuration > 3600:
		return nil, usageError(fs, "--lease-duration must be at most 3600 seconds, got %d", t.LeaseDuration)
	case t.LeaseDuration <= t.RenewDeadline:
		return nil, usageError(fs, "--lease-duration (%d) must be greater than --renew-deadline (%d)",
			t.LeaseDuration, t.RenewDeadline)
	case float64(t.RenewDeadline) <= leaderelection.JitterFactor*float64(t.RetryPeriod):
		return nil, usageError(fs, "--renew-deadline (%d) must be greater than %.1f x --retry-period (%d)",
			t.RenewDeadline, leaderelection.JitterFactor, t.RetryPeriod)
	}
	if _, err := t.CallBound(); err != nil {
		return nil, usageError(fs, "%v", err)
	}
	return o, -1
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, code := parse(args)
	if o == nil {
		return code
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix(o.identity + " ")

	eventsFile, err := openAppend(o.events)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mclease-go-candidate: cannot open --events: %v\n", err)
		return 2
	}
	defer eventsFile.Close()
	events := &Events{file: eventsFile}

	config, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mclease-go-candidate: cannot load --kubeconfig: %v\n", err)
		return 2
	}
	// The lock polls every 20 ms: client-go's default limit of 5 requests a second would stretch
	// every confirmation. Each request is bounded by the lock's call deadline instead.
	config.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	config.UserAgent = "mclease-go-candidate/" + o.identity
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mclease-go-candidate: %v\n", err)
		return 2
	}
	record := func(start, end float64, ok bool, kind string) {
		answer := 0
		if ok {
			answer = 1
		}
		events.Write("call", fmt.Sprintf("%.6f", start), fmt.Sprintf("%.6f", end), answer, kind)
	}
	lock, err := NewLock(client, o.namespace, o.name, o.identity, o.timing, record)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mclease-go-candidate: %v\n", err)
		return 2
	}
	log.Printf("campaigning for %s: D=%ds R=%ds P=%ds, call bound C=%.2fs, release on cancel %v",
		lock.Describe(), o.timing.LeaseDuration, o.timing.RenewDeadline, o.timing.RetryPeriod,
		lock.CallBoundSeconds(), o.releaseOnCancel)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-signals
		log.Printf("%v: stopping", s)
		cancel()
		for s := range signals { // a repeated signal must not interrupt the release
			log.Printf("%v again: still stopping", s)
		}
	}()

	second := func(n int) time.Duration { return time.Duration(n) * time.Second }
	var term *Term
	for number := 1; ctx.Err() == nil; number++ {
		term = newTerm(number, o.identity, o.heartbeats, events)
		current := term
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   second(o.timing.LeaseDuration),
			RenewDeadline:   second(o.timing.RenewDeadline),
			RetryPeriod:     second(o.timing.RetryPeriod),
			ReleaseOnCancel: o.releaseOnCancel,
			Name:            o.name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: current.Run,
				OnStoppedLeading: func() {
					current.OnStopped()
					lock.EndTerm()
				},
			},
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "mclease-go-candidate: %v\n", err)
			return 2
		}
		elector.Run(ctx)
	}
	// Run returned after OnStoppedLeading, which waited for the heartbeats to stop; stopping
	// again only makes sure of it (a term whose OnStartedLeading had not begun stays a no-op).
	if term != nil {
		term.Stop()
	}
	events.Write("released", stamp(), boolInt(lock.Released()))
	log.Printf("stopped (released: %v)", lock.Released())
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
