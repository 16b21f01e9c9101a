package actions

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAddReinstate: the rows a person can reinstate get the command that
// does it; one that is not suspended, or that only Twilio can reinstate,
// gets none.
func TestAddReinstate(t *testing.T) {
	const command = "/usr/local/bin/sentinel -control-socket /srv/s.sock"
	rows := []StatusRow{
		{SID: "AC1", Attention: AttentionSuspended, Breaker: StateOpen},
		{SID: "AC2", Attention: AttentionSuspended, Breaker: StateExternalSuspended},
		{SID: "AC3", Attention: AttentionSuspended, Breaker: StateTwilioSuspended},
		{SID: "AC4", Attention: AttentionTripping, Breaker: StateClosed},
		{SID: "AC5", Attention: AttentionOK, Breaker: StateAccountClosed},
	}
	AddReinstate(rows, command)
	got := map[string]string{}
	for _, r := range rows {
		got[r.SID] = r.Reinstate
	}
	want := map[string]string{
		"AC1": command + ` -reinstate AC1 -reason "<why>"`,
		"AC2": command + ` -reinstate AC2 -reason "<why>"`,
		"AC3": "", "AC4": "", "AC5": "",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Reinstate (-want +got):\n%s", diff)
	}
}
