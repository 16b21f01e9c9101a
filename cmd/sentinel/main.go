// Command sentinel watches every Twilio subaccount of a parent account for
// compliance trouble and suspends the one that crosses the line, so that the
// others keep sending. See the README for the model and the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version, when set at build time with -ldflags "-X main.version=...",
// overrides the module version Go records in the binary (see buildInfo).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a graceful stop (a running cycle gets
	// -shutdown-grace); a second one, delivered with the default action
	// again, ends the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sentinel: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// exitCode maps run's error to the process's exit status: 2 for a bad
// command line, 1 for everything else.
func exitCode(err error) int {
	if isUsage(err) {
		return 2
	}
	return 1
}

// run is the program. Tests call it with their own arguments, environment
// and output streams.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return usageError(err)
	}
	log := newLogger(cfg, stderr)
	switch {
	case cfg.version:
		fmt.Fprintln(stdout, readBuildInfo())
		return nil
	case cfg.checkPolicies:
		return checkPolicies(cfg, stdout)
	case cfg.testPolicies:
		return testPolicies(cfg, stdout)
	case cfg.status:
		return status(ctx, cfg, stdout, stderr)
	case cfg.history != "":
		return history(ctx, cfg, stdout)
	case cfg.bt.backtest:
		return runBacktest(ctx, cfg, stdout, stderr)
	case cfg.bt.explain != "":
		return runExplain(ctx, cfg, stdout)
	case cfg.reinstate != "" || cfg.suspend != "":
		return manual(ctx, cfg, getenv, log, stdout)
	case cfg.demo:
		return runDemo(ctx, cfg, log, stdout, stderr)
	case cfg.eventsSetup:
		// Falling through would start the daemon, which acts, in place
		// of a command that was to print what it changed and exit.
		return errors.New("-events-setup is not available yet: create the Event Streams sink (webhook to -events-url + " +
			"/twilio/events, with the SENTINEL_EVENTS_* credentials) and its subscription in the Twilio console")
	}
	if cfg.accountSID == "" || cfg.authToken == "" {
		return usageError(fmt.Errorf("%w (or use -demo)", errNoTwilio))
	}
	return daemon(ctx, cfg, log)
}
