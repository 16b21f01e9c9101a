package actions

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"sentinel/internal/policy"
	"sentinel/internal/store"
)

func TestSortCandidates(t *testing.T) {
	c := func(sid, rule, sev string, value, threshold float64) candidate {
		return candidate{acct: store.Account{SID: sid}, dec: policy.Decision{Rule: rule, Severity: sev,
			Evidence: policy.Evidence{Value: value, Threshold: threshold}}}
	}
	cands := []candidate{
		c("AC3", "r", policy.SeverityWarning, 0.9, 0.1), // strongest, but only a warning
		c("AC2", "r", policy.SeverityCritical, 0.2, 0.1),
		c("AC1", "r", policy.SeverityCritical, 0.2, 0.1), // tie: SID decides
		c("AC4", "r", policy.SeverityCritical, 0.6, 0.1),
		c("AC5", "r", policy.SeverityInfo, 50, 1),
		c("AC1", "a", policy.SeverityCritical, 0.2, 0.1), // tie: rule decides
	}
	sortCandidates(cands)
	var got []string
	for _, x := range cands {
		got = append(got, x.acct.SID+"/"+x.dec.Rule)
	}
	want := []string{"AC4/r", "AC1/a", "AC1/r", "AC2/r", "AC3/r", "AC5/r"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}
