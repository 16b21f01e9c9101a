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
}

// Scheduler runs Jobs on their schedules. A job never overlaps itself: a
// tick that arrives while the job runs is remembered (once), so a slow run
// delays the next one instead of stacking runs behind it. Every job runs
// once at start, in the order given.
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
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	s := &Scheduler{jobs: jobs, log: log, cron: cron.New(cron.WithParser(parser), cron.WithLocation(time.UTC))}
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
	// The first runs go in order, so the account list is read before the
	// logs of the accounts on it; then each job gets its own loop.
	for _, j := range s.jobs {
		if ctx.Err() != nil {
			break
		}
		j.Run(ctx)
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
	s.cron.Start()
	<-ctx.Done()
	<-s.cron.Stop().Done()
	wg.Wait()
	return nil
}
