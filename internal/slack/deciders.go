package slack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goslack "github.com/slack-go/slack"
)

// groupReader reads a user group's members: *goslack.Client.
type groupReader interface {
	GetUserGroupMembersContext(ctx context.Context, group string, options ...goslack.GetUserGroupMembersOption) ([]string, error)
}

// deciders says who may decide: the users named, and the members of the
// user groups named, read through the Web API and kept for a while.
type deciders struct {
	users  map[string]bool
	groups []string
	api    groupReader
	ttl    time.Duration
	now    func() time.Time
	red    redactor

	mu    sync.Mutex // one read of Slack at a time; guards cache
	cache map[string]membership
}

type membership struct {
	members map[string]bool
	at      time.Time
	err     error
}

func newDeciders(ids []string, api groupReader, ttl time.Duration, now func() time.Time, red redactor) *deciders {
	d := &deciders{users: map[string]bool{}, api: api, ttl: ttl, now: now, red: red, cache: map[string]membership{}}
	for _, id := range ids {
		if strings.HasPrefix(id, "S") {
			d.groups = append(d.groups, id)
		} else {
			d.users[id] = true
		}
	}
	return d
}

// allow reports whether user may decide, and if not, why, in words for
// that person. A group whose members cannot be read lets nobody in.
func (d *deciders) allow(ctx context.Context, user string) (bool, string) {
	if len(d.users) == 0 && len(d.groups) == 0 {
		return false, "nobody may decide from Slack: sentinel's -slack-deciders names nobody"
	}
	if d.users[user] {
		return true, ""
	}
	var unread []string
	for _, g := range d.groups {
		m, err := d.members(ctx, g, user)
		if err != nil {
			unread = append(unread, fmt.Sprintf("%s (%v)", g, err))
			continue
		}
		if m[user] {
			return true, ""
		}
	}
	why := fmt.Sprintf("%s is not one of sentinel's deciders (-slack-deciders)", user)
	if len(unread) > 0 {
		why += "; the members of " + strings.Join(unread, ", ") + " could not be read from Slack, so nobody in that group may decide until they can"
	}
	return false, why
}

// members returns group's members, read again once older than the TTL, or,
// when user is not among them, once older than a sixth of it: a person
// just added to the group is let in within seconds, and a refused person
// clicking again does not make sentinel hammer Slack.
func (d *deciders) members(ctx context.Context, group, user string) (map[string]bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	c, ok := d.cache[group]
	age := now.Sub(c.at)
	switch {
	case ok && c.err == nil && age < d.ttl && (c.members[user] || age < d.ttl/6):
		return c.members, nil
	case ok && c.err != nil && age < d.ttl/6:
		return nil, c.err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ids, err := d.api.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		err = errors.New(d.red.redact(err.Error()))
		d.cache[group] = membership{at: now, err: err}
		return nil, err
	}
	m := membership{members: map[string]bool{}, at: now}
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		m.members[id] = true
	}
	d.cache[group] = m
	return m.members, nil
}
