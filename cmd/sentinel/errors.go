package main

import "errors"

type usageErr struct{ err error }

func (e usageErr) Error() string { return e.err.Error() }
func (e usageErr) Unwrap() error { return e.err }

// usageError marks err as a problem with the command line.
func usageError(err error) error { return usageErr{err} }

func isUsage(err error) bool {
	var u usageErr
	return errors.As(err, &u)
}
