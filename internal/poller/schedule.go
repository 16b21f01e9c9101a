package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Job is one scheduled piece of work, such as polling every message log and
// then judging the result.
type Job struct {
	// Name identifies the job in logs.
	Name string
	// Spec is a cron spec ("*/5 * * * *") or a descriptor ("@every 1m"),
	// evaluated in UTC.
	Spec string
	// Run does the work. It should return when ctx is done.
	Run func(ctx context.Context)
	// Concurrent makes the job's first run start at once beside the
	// others, instead of after the jobs before it in order: work that
	// must not hold up the message watch (usage), and that the first
	// message pass need not wait for.
	Concurrent bool
	// Deferred skips the first run at start: the job first runs on its
	// schedule (a sweep, which right after the first reads has nothing to
	// find).
	Deferred bool
}

// Scheduler runs Jobs on their schedules. A job never overlaps itself: a
// tick that arrives while the job runs is remembered (once), so a slow run
// delays the next one instead of stacking runs behind it. Every job runs
// once at start, in the order given, except a Concurrent job, which starts
// its first run at once, and a Deferred one, which waits for its schedule.
type Scheduler struct {
	jobs  []Job
	log   *slog.Logger
	cron  *cron.Cron
	kicks []chan struct{}
}

// NewScheduler parses every job's spec up front, so a bad flag is reported
// before anything runs.
func NewScheduler(log *slog.Logger, jobs ...Job) (*Scheduler, error) {
	if len(jobs) == 0 {
		return nil, errors.New("schedule: no jobs")
	}
	s := &Scheduler{jobs: jobs, log: log, cron: cron.New(cron.WithParser(parser()), cron.WithLocation(time.UTC))}
	for _, j := range jobs {
		if j.Run == nil {
			return nil, fmt.Errorf("schedule %s: no function", j.Name)
		}
		kick := make(chan struct{}, 1)
		s.kicks = append(s.kicks, kick)
		if _, err := s.cron.AddFunc(j.Spec, func() { poke(kick) }); err != nil {
			return nil, fmt.Errorf("schedule %s: bad spec %q: %w", j.Name, j.Spec, err)
		}
	}
	return s, nil
}

// poke asks for a run without ever blocking: if a run is already pending,
// the tick is dropped.
func poke(kick chan struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}

// Run runs the jobs until ctx is done, then waits for running jobs to
// return (they see the same ctx) and returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	// The schedules start now, not after the first runs: a tick that comes
	// while a job's first run is going waits for it (see poke), so a first
	// pass over the message logs that takes 40s is followed by the next at
	// one minute from start, not at 1m40s.
	s.cron.Start()
	// The first runs go in order, so the account list is read before the
	// logs of the accounts on it; then each job gets its own loop.
	for i, j := range s.jobs {
		switch {
		case j.Deferred:
		case j.Concurrent:
			poke(s.kicks[i])
		case ctx.Err() == nil:
			j.Run(ctx)
		}
	}
	for i, j := range s.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-s.kicks[i]:
					// select picks at random among ready cases: a tick
					// that raced the cancellation must not start a run.
					if ctx.Err() != nil {
						return
					}
					j.Run(ctx)
				}
			}
		}()
	}
	<-ctx.Done()
	<-s.cron.Stop().Done()
	wg.Wait()
	return nil
}

// Interval returns the shortest time between two runs of spec, a cron spec
// or descriptor as Job.Spec takes it: how long a run has before the next
// one is due. For a cron spec it is the shortest gap among its next
// maxRuns runs, which for any spec that repeats within a few days is the
// shortest gap there is.
func Interval(spec string) (time.Duration, error) {
	sched, err := parser().Parse(spec)
	if err != nil {
		return 0, fmt.Errorf("bad spec %q: %w", spec, err)
	}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok {
		return every.Delay, nil
	}
	const maxRuns = 2000
	// Any fixed instant will do: the spec is evaluated in UTC, which has
	// no daylight saving time to make the gaps depend on the date.
	t := sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	var shortest time.Duration
	for range maxRuns {
		next := sched.Next(t)
		if next.IsZero() {
			break
		}
		if gap := next.Sub(t); shortest == 0 || gap < shortest {
			shortest = gap
		}
		if shortest == time.Minute {
			break // a cron spec runs at most once a minute
		}
		t = next
	}
	if shortest == 0 {
		return 0, fmt.Errorf("spec %q does not run repeatedly", spec)
	}
	return shortest, nil
}

// parser parses Job specs: five cron fields or a descriptor.
func parser() cron.Parser {
	return cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}
