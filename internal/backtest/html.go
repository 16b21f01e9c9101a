package backtest

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"sentinel/internal/policy"
)

// maxCharted bounds the subaccounts an HTML report draws: past it, a
// noisy rule over a large fleet would make a file no browser opens
// comfortably. The others are listed, without charts.
const maxCharted = 200

// Chart geometry, in SVG user units.
const (
	chartW      = 760
	chartH      = 170
	chartSmallH = 90
	padLeft     = 64
	padRight    = 12
	padTop      = 14
	padBottom   = 24
)

// WriteHTML writes the report as one self-contained HTML page: inline CSS
// and SVG, no script, no font, nothing fetched (its Content-Security-Policy
// forbids it). Every customer string is escaped by html/template.
func (r *Report) WriteHTML(w io.Writer) error {
	p := page{
		Title:   fmt.Sprintf("sentinel backtest %s to %s UTC", r.From.UTC().Format(textTime), r.To.UTC().Format(textTime)),
		Report:  r,
		Step:    r.Step,
		Summary: r.Summary,
	}
	charted := map[string]AccountChart{}
	for _, c := range r.Charts {
		charted[c.SID] = c
	}
	for i, s := range r.Subaccounts {
		// Escaped by html/template; control and formatting characters
		// (escape sequences, bidirectional overrides) replaced too.
		s.Name = Clean(s.Name, 200)
		ps := pageSubaccount{Subaccount: s}
		for _, rr := range s.Rules {
			ps.Rows = append(ps.Rows, pageRow{Rule: rr.Rule, Fired: len(rr.FiredAt), First: rr.FiredAt[0],
				Outcome: r.outcomeText(rr), Peak: peakText(r.rule(rr.Rule), rr.Peak), Suspends: rr.WouldSuspendAt != nil})
		}
		if c, ok := charted[s.SID]; ok && i < maxCharted {
			ps.Charts = chartsSVG(c)
		} else {
			p.Uncharted++
		}
		p.Subaccounts = append(p.Subaccounts, ps)
	}
	for _, h := range r.Fleet {
		p.Fleet = append(p.Fleet, histogramSVG(h))
	}
	p.Diff = r.diffRows()
	return pageTmpl.Execute(w, p)
}

// diffRows sets the backtest's suspensions against sentinel's, by
// subaccount.
func (r *Report) diffRows() []diffRow {
	names := map[string]string{}
	for _, s := range r.Subaccounts {
		names[s.SID] = s.Name
	}
	backtest := r.suspensions()
	for _, a := range r.Actual {
		if names[a.SID] == "" {
			names[a.SID] = a.Name
		}
	}
	var out []diffRow
	add := func(mark, class string, sids []string) {
		for _, sid := range sids {
			_, fired := backtest[sid]
			out = append(out, diffRow{Mark: mark, Class: class, SID: sid, Name: Clean(names[sid], 80), Link: fired,
				Backtest: strings.Join(backtest[sid], ", "), Actual: strings.Join(r.actual(sid), ", ")})
		}
	}
	add("+", "plus", r.Summary.OnlyBacktest)
	add("−", "minus", r.Summary.OnlyActual)
	add("=", "", r.Summary.Both)
	return out
}

// WriteHTML writes the explanation as one self-contained HTML page, as
// Report.WriteHTML does: the rules' lines, and each rule's last 24 hours
// charted.
func (e *Explanation) WriteHTML(w io.Writer) error {
	shown := *e
	shown.Status.Name = Clean(e.Status.Name, 200)
	p := explainPage{
		Title: fmt.Sprintf("sentinel: why %s is %s", e.Status.SID, e.Status.State),
		E:     &shown,
	}
	if e.Chart != nil {
		p.Charts = chartsSVG(*e.Chart)
	}
	return explainTmpl.Execute(w, p)
}

type page struct {
	Diff        []diffRow
	Title       string
	Report      *Report
	Step        string
	Summary     Summary
	Subaccounts []pageSubaccount
	Uncharted   int
	Fleet       []template.HTML
}

// diffRow is one subaccount suspended in the backtest, in reality or in
// both.
type diffRow struct {
	Mark, Class, SID, Name string
	Backtest, Actual       string
	Link                   bool
}

type pageSubaccount struct {
	Subaccount
	Rows   []pageRow
	Charts []template.HTML
}

type pageRow struct {
	Rule, Outcome, Peak string
	Fired               int
	First               time.Time
	Suspends            bool
}

type explainPage struct {
	Title  string
	E      *Explanation
	Charts []template.HTML
}

// svgTmpl draws one rule's chart. Its inputs are numbers the package
// computes and names that html/template escapes.
var svgTmpl = template.Must(template.New("svg").Parse(`<figure class="rule">
<svg class="chart" data-sid="{{.SID}}" data-rule="{{.Rule}}" data-fired="{{.Fired}}" viewBox="0 0 {{.W}} {{.H}}" width="{{.W}}" height="{{.H}}" role="img" aria-label="{{.Rule}} for {{.SID}}">
<rect class="plot" x="{{.X0}}" y="{{.Y0}}" width="{{.PW}}" height="{{.PH}}"/>
{{range .Shade}}<rect class="suspended" x="{{.X}}" y="{{$.Y0}}" width="{{.W}}" height="{{$.PH}}"><title>{{.Title}}</title></rect>
{{end}}{{range .YTicks}}<line class="grid" x1="{{$.X0}}" x2="{{$.X1}}" y1="{{.Y}}" y2="{{.Y}}"/><text class="ylabel" x="{{.LX}}" y="{{.TY}}">{{.Label}}</text>
{{end}}{{range .XTicks}}<text class="xlabel {{.Class}}" x="{{.X}}" y="{{$.XLabelY}}">{{.Label}}</text>
{{end}}{{if .Resolve}}<path class="resolve" d="{{.Resolve}}"><title>resolve line</title></path>
{{end}}<path class="trip" d="{{.Trip}}"><title>trip threshold</title></path>
<path class="value" d="{{.Value}}"/>
{{range .Marks}}<line class="mark {{.Class}}" x1="{{.X}}" x2="{{.X}}" y1="{{$.Y0}}" y2="{{$.Y1}}"><title>{{.Title}}</title></line>
{{end}}{{range .FiredMarks}}<path class="fired" d="M{{.X}},{{.Y}}l-5,-9h10z"><title>{{.Title}}</title></path>
{{end}}</svg>
<figcaption><strong>{{.Rule}}</strong> — {{.Caption}}</figcaption>
</figure>`))

type svgData struct {
	SID, Rule, Caption              string
	Fired                           bool
	W, H                            int
	X0, X1, Y0, Y1, PW, PH, XLabelY float64
	Value, Trip, Resolve            string
	YTicks                          []tick
	XTicks                          []tick
	Shade                           []shade
	Marks                           []mark
	FiredMarks                      []mark
}

type tick struct {
	X, Y, LX, TY float64
	Label, Class string
}

type shade struct {
	X, W  float64
	Title string
}

type mark struct {
	X, Y         float64
	Class, Title string
}

// chartsSVG draws one subaccount's charts: the rules that fired full
// size, the others it was judged on smaller.
func chartsSVG(c AccountChart) []template.HTML {
	var out []template.HTML
	for _, rc := range c.Rules {
		out = append(out, ruleSVG(c, rc))
	}
	return out
}

// ruleSVG draws one rule's values for one subaccount: the value (highest
// per column), the trip and resolve lines in force (halved on
// probation), where it fired and where the replay would suspend, where
// sentinel actually suspended and where the subaccount was reinstated,
// and the stretches the replay had it suspended.
func ruleSVG(c AccountChart, rc RuleChart) template.HTML {
	h := chartH
	if len(rc.Fired) == 0 {
		h = chartSmallH
	}
	d := svgData{SID: c.SID, Rule: rc.Rule.Name, Fired: len(rc.Fired) > 0, W: chartW, H: h}
	d.X0, d.X1 = padLeft, chartW-padRight
	d.Y0, d.Y1 = padTop, float64(h-padBottom)
	d.PW, d.PH = d.X1-d.X0, d.Y1-d.Y0
	d.XLabelY = d.Y1 + 16
	span := c.To.Sub(c.From)
	if span <= 0 {
		span = time.Minute
	}
	x := func(t time.Time) float64 {
		f := float64(t.Sub(c.From)) / float64(span)
		return d.X0 + math.Max(0, math.Min(1, f))*d.PW
	}
	top := 0.0
	for _, p := range rc.Points {
		if p.Judged {
			top = math.Max(top, math.Max(p.Value, math.Max(p.Trip, p.Resolve)))
		}
	}
	if top <= 0 {
		top = 1
	}
	top *= 1.15
	y := func(v float64) float64 { return d.Y1 - math.Max(0, math.Min(1, v/top))*d.PH }

	var value, trip, resolve strings.Builder
	hasResolve := false
	pen := false
	run := 0 // points in the current stretch of the value line
	lastTrip, lastResolve := -1.0, -1.0
	for i, p := range rc.Points {
		if !p.Judged {
			if run == 1 {
				value.WriteString("h2") // a lone point is a dash
			}
			pen, run = false, 0
			continue
		}
		px := x(p.At)
		next := c.To
		if i+1 < len(rc.Points) {
			next = rc.Points[i+1].At
		}
		nx := x(next)
		cmd := "L"
		if !pen {
			cmd = "M"
		}
		fmt.Fprintf(&value, "%s%s,%s", cmd, num(px), num(y(p.Value)))
		pen = true
		run++
		// The thresholds are steps: they hold until they change.
		if p.Trip != lastTrip || trip.Len() == 0 {
			fmt.Fprintf(&trip, "M%s,%s", num(px), num(y(p.Trip)))
		}
		fmt.Fprintf(&trip, "H%s", num(nx))
		lastTrip = p.Trip
		if p.Resolve != p.Trip {
			hasResolve = true
		}
		if p.Resolve != lastResolve || resolve.Len() == 0 {
			fmt.Fprintf(&resolve, "M%s,%s", num(px), num(y(p.Resolve)))
		}
		fmt.Fprintf(&resolve, "H%s", num(nx))
		lastResolve = p.Resolve
	}
	if run == 1 {
		value.WriteString("h2")
	}
	d.Value, d.Trip = value.String(), trip.String()
	if hasResolve {
		d.Resolve = resolve.String()
	}
	if d.Trip == "" {
		d.Trip = "M0,0"
	}
	if d.Value == "" {
		d.Value = "M0,0"
	}
	signal := rc.Rule.Signal
	for _, v := range []float64{0, top / 1.15 / 2, top / 1.15} {
		ty := y(v)
		d.YTicks = append(d.YTicks, tick{Y: ty, LX: d.X0 - 6, TY: ty + 4, Label: FormatValue(signal, v)})
	}
	for i := range 5 {
		t := c.From.Add(span * time.Duration(i) / 4)
		tk := tick{X: x(t), Label: t.UTC().Format("01-02 15:04")}
		switch i {
		case 0:
			tk.Class = "first"
		case 4:
			tk.Class = "last"
		}
		d.XTicks = append(d.XTicks, tk)
	}
	for _, s := range c.Suspended {
		d.Shade = append(d.Shade, shade{X: x(s[0]), W: math.Max(1, x(s[1])-x(s[0])),
			Title: "suspended in the backtest from " + s[0].UTC().Format(textTime) + " UTC: not judged"})
	}
	for _, ch := range c.Changes {
		switch {
		case ch.Offence():
			d.Marks = append(d.Marks, mark{X: x(ch.At), Class: "actual", Title: "actually suspended by sentinel at " + ch.At.UTC().Format(textTime) + " UTC (" + ch.Rule + ")"})
		case ch.Suspension():
			d.Marks = append(d.Marks, mark{X: x(ch.At), Class: "actual", Title: "suspended at " + ch.At.UTC().Format(textTime) + " UTC by " + ch.Actor})
		case ch.Reinstatement():
			d.Marks = append(d.Marks, mark{X: x(ch.ReinstatedAt), Class: "reinstated", Title: "reinstated at " + ch.ReinstatedAt.UTC().Format(textTime) + " UTC by " + ch.Actor})
		}
	}
	for _, at := range rc.Suspend {
		d.Marks = append(d.Marks, mark{X: x(at), Class: "suspend", Title: "the backtest would suspend at " + at.UTC().Format(textTime) + " UTC"})
	}
	for _, b := range rc.Blocked {
		d.Marks = append(d.Marks, mark{X: x(b.At), Class: "blocked", Title: b.At.UTC().Format(textTime) + " UTC: " + b.Why})
	}
	for _, at := range rc.Fired {
		d.FiredMarks = append(d.FiredMarks, mark{X: x(at), Y: d.Y0 + 9, Title: "fired at " + at.UTC().Format(textTime) + " UTC"})
	}
	window := "today"
	if rc.Rule.Window > 0 {
		window = policy.FormatDuration(rc.Rule.Window)
	}
	d.Caption = fmt.Sprintf("%s over %s, %s at %s, trip %s", signal, window, rc.Rule.Action, rc.Rule.Severity,
		FormatValue(signal, rc.Rule.Trip))
	if rc.Rule.Resolve != rc.Rule.Trip {
		d.Caption += ", resolves below " + FormatValue(signal, rc.Rule.Resolve)
	}
	if n := len(rc.Fired); n > 0 {
		d.Caption += fmt.Sprintf("; fired %s", plural(n, "time"))
	}
	var b strings.Builder
	if err := svgTmpl.Execute(&b, d); err != nil {
		return template.HTML(template.HTMLEscapeString(err.Error()))
	}
	return template.HTML(b.String()) //nolint:gosec // rendered by html/template, which escaped every string in it
}

// histTmpl draws one rule's fleet histogram.
var histTmpl = template.Must(template.New("hist").Parse(`<figure class="fleet">
<svg class="histogram" data-rule="{{.Rule}}" viewBox="0 0 {{.W}} {{.H}}" width="{{.W}}" height="{{.H}}" role="img" aria-label="{{.Rule}}: subaccounts by how close they came to the threshold">
{{range .Bars}}<rect class="bar{{if .Over}} over{{end}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
<text class="count" x="{{.CX}}" y="{{.CY}}">{{.N}}</text><text class="xlabel" x="{{.CX}}" y="{{$.LY}}">{{.Label}}</text>
{{end}}</svg>
<figcaption><strong>{{.Rule}}</strong> ({{.Action}}): subaccounts by their peak, in tenths of the trip threshold{{if .NotJudged}}; {{.NotJudged}} never judged (too little traffic or no data){{end}}</figcaption>
</figure>`))

type bar struct {
	X, Y, W, H, CX, CY float64
	N                  int
	Label, Title       string
	Over               bool
}

// histogramSVG draws how many subaccounts came how close to a rule's
// threshold: where a threshold cuts the fleet.
func histogramSVG(h Histogram) template.HTML {
	const w, ht, pad, bottom = 320, 120, 6, 20
	most := 1
	for _, n := range h.Bins {
		most = max(most, n)
	}
	d := struct {
		Rule, Action string
		NotJudged    int
		W, H         int
		LY           float64
		Bars         []bar
	}{Rule: h.Rule, Action: h.Action, NotJudged: h.NotJudged, W: w, H: ht, LY: ht - 5}
	bw := float64(w-2*pad) / float64(len(h.Bins))
	for i, n := range h.Bins {
		bh := float64(ht-bottom-2*pad) * float64(n) / float64(most)
		x := pad + float64(i)*bw
		label := strconv.Itoa(i*10) + "%"
		title := fmt.Sprintf("%d subaccounts peaked at %d–%d%% of the threshold", n, i*10, i*10+10)
		if i == len(h.Bins)-1 {
			label = "≥100%"
			title = fmt.Sprintf("%d subaccounts reached the threshold", n)
		}
		d.Bars = append(d.Bars, bar{X: x + 2, Y: float64(ht-bottom) - bh, W: bw - 4, H: bh, CX: x + bw/2,
			CY: float64(ht-bottom) - bh - 3, N: n, Label: label, Title: title, Over: i == len(h.Bins)-1})
	}
	var b strings.Builder
	if err := histTmpl.Execute(&b, d); err != nil {
		return template.HTML(template.HTMLEscapeString(err.Error()))
	}
	return template.HTML(b.String()) //nolint:gosec // rendered by html/template, which escaped every string in it
}

// num writes a coordinate with one decimal.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

const style = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#1d2327;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.muted{color:#5f6b73}table{border-collapse:collapse;margin:8px 0}th,td{text-align:left;padding:3px 10px 3px 0;vertical-align:top}
th{font-weight:600;border-bottom:1px solid #ccd3d8}td.num{text-align:right}.suspends{color:#b3261e;font-weight:600}
code{font:12px ui-monospace,monospace;background:#f1f3f4;padding:1px 4px;border-radius:3px}
.diff .plus{color:#b3261e}.diff .minus{color:#1d6f42}article{border-top:1px solid #e1e5e8;padding-top:6px}
figure{margin:10px 0}figcaption{font-size:12px;color:#5f6b73}.fleetgrid{display:flex;flex-wrap:wrap;gap:4px 28px}
figure.fleet{width:320px;margin:4px 0}
svg text{font:11px system-ui,sans-serif;fill:#5f6b73}svg .ylabel,svg .xlabel.last{text-anchor:end}svg .xlabel,svg .count{text-anchor:middle}
svg .xlabel.first{text-anchor:start}
.plot{fill:#fbfcfc;stroke:#e1e5e8}.grid{stroke:#eef1f2}.value{fill:none;stroke:#1a5fb4;stroke-width:1.6}
.trip{fill:none;stroke:#c01c28;stroke-width:1.2;stroke-dasharray:6 3}.resolve{fill:none;stroke:#e5a50a;stroke-width:1.2;stroke-dasharray:2 3}
.suspended{fill:#dde1e4;opacity:.7}.mark{stroke-width:2}.mark.suspend{stroke:#c01c28}.mark.actual{stroke:#1d2327;stroke-dasharray:4 2}
.mark.reinstated{stroke:#26a269}.mark.blocked{stroke:#9141ac;stroke-dasharray:1 3}.fired{fill:#e66100}
.bar{fill:#99c1f1}.bar.over{fill:#c01c28}.legend span{margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:18px;height:0;border-top:2px solid;vertical-align:middle;margin-right:4px}
`

const legend = `<p class="legend muted"><span><i style="border-color:#1a5fb4"></i>value (highest per column)</span>
<span><i style="border-color:#c01c28;border-top-style:dashed"></i>trip threshold</span>
<span><i style="border-color:#e5a50a;border-top-style:dotted"></i>resolve line</span>
<span><i style="border-color:#e66100;border-top-width:6px;width:8px"></i>fired</span>
<span><i style="border-color:#c01c28"></i>backtest would suspend</span>
<span><i style="border-color:#9141ac;border-top-style:dotted"></i>blocked by a rail</span>
<span><i style="border-color:#1d2327;border-top-style:dashed"></i>actually suspended</span>
<span><i style="border-color:#26a269"></i>reinstated</span>
<span><i style="border-color:#dde1e4;border-top-width:8px"></i>suspended in the backtest</span></p>`

var funcs = template.FuncMap{
	"t": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format(textTime)
	},
	"value": FormatValue,
	"join":  strings.Join,
}

// head opens both pages: their Content-Security-Policy lets nothing be
// fetched or run.
const head = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>` + style + `</style></head>
`

var pageTmpl = template.Must(template.New("page").Funcs(funcs).Parse(head + `<body>
<h1>Backtest: what these rules would have done</h1>
<p class="muted">{{t .Report.From}} to {{t .Report.To}} UTC, {{if .Step}}every {{.Step}}{{else}}at given times{{end}}: {{.Report.Evaluations}} evaluations of {{.Report.Judged}} accounts against {{len .Report.Rules}} rules. History is judged as it is known now: every message in its latest state.</p>

<h2 id="summary">Summary</h2>
<table class="summary">
<tr><th>Would suspend</th><td class="num">{{.Summary.WouldSuspend}}</td><td class="muted">suspensions in the backtest</td></tr>
<tr><th>Alerts</th><td class="num">{{.Summary.Alerts}}</td><td class="muted">times a rule fired (each an incident told to Slack)</td></tr>
<tr><th>Actually suspended</th><td class="num">{{.Summary.ActuallySuspended}}</td><td class="muted">by sentinel in the same period, from the audit log</td></tr>
</table>
{{if .Diff}}<table class="diff">
<tr><th></th><th>subaccount</th><th></th><th>backtest would suspend (UTC)</th><th>sentinel suspended (UTC)</th></tr>
{{range .Diff}}<tr class="{{.Class}}"><td>{{.Mark}}</td><td>{{if .Link}}<a href="#{{.SID}}">{{.Name}}</a>{{else}}{{.Name}}{{end}}</td><td><code>{{.SID}}</code></td><td>{{.Backtest}}</td><td>{{.Actual}}</td></tr>
{{end}}</table>{{end}}

<h2 id="fleet">How close the fleet came to each threshold</h2>
<p class="muted">Each judged subaccount counted once per rule, at its peak over the period as a share of the trip threshold in force.</p>
<div class="fleetgrid">{{range .Fleet}}{{.}}{{end}}</div>

<h2 id="subaccounts">Subaccounts for which a rule fired ({{len .Subaccounts}})</h2>
{{if .Subaccounts}}` + legend + `{{else}}<p>No rule would have fired.</p>{{end}}
{{if .Uncharted}}<p class="muted">{{.Uncharted}} of them are listed without charts, to keep this file small: narrow the period or the policies to see theirs.</p>{{end}}
{{range .Subaccounts}}<article class="subaccount" id="{{.SID}}" data-sid="{{.SID}}">
<h3>{{.Name}} <code>{{.SID}}</code>{{if .Parent}} (parent){{end}}</h3>
<table><tr><th>rule</th><th>fired</th><th>first (UTC)</th><th>would suspend</th><th>peak</th></tr>
{{range .Rows}}<tr><td>{{.Rule}}</td><td class="num">{{.Fired}}</td><td>{{t .First}}</td><td{{if .Suspends}} class="suspends"{{end}}>{{.Outcome}}</td><td>{{.Peak}}</td></tr>
{{end}}</table>
{{if .ActuallySuspendedAt}}<p>Actually suspended by sentinel: {{range $i, $t := .ActuallySuspendedAt}}{{if $i}}, {{end}}{{t $t}}{{end}} UTC.</p>{{end}}
{{if .ReinstatedAt}}<p>Reinstated: {{range $i, $t := .ReinstatedAt}}{{if $i}}, {{end}}{{t $t}}{{end}} UTC.</p>{{end}}
{{range .Charts}}{{.}}{{end}}
</article>
{{end}}
<p class="muted">Made by sentinel -backtest. A step inside a five-minute bucket counts that bucket whole; spend within a day is known only as the day's total as last read, and spread over the day's messages. See the README, "Backtest and explain".</p>
</body></html>
`))

var explainTmpl = template.Must(template.New("explain").Funcs(funcs).Parse(head + `<body>
{{with .E}}<h1>{{.Status.Name}} <code>{{.Status.SID}}</code></h1>
<p><strong>{{.Status.State}}</strong> (Twilio: {{.Status.Status}}){{if .Status.Note}} — {{.Status.Attention}}: {{.Status.Note}}{{end}}</p>
<p class="muted">Judged at {{t .At}} UTC by the policies {{if .Daemon}}the daemon runs{{else}}given{{end}}. Message log known complete {{if .Status.DataUntil.IsZero}}nowhere yet{{else}}until {{t .Status.DataUntil}} UTC{{end}}{{if not .Status.ProbationUntil.IsZero}}; on probation until {{t .Status.ProbationUntil}} UTC{{end}}.</p>
<table>
<tr><th>rule</th><th>result</th><th>value</th><th>threshold</th><th>resolve</th><th>window</th><th>volume</th><th>coverage</th><th>for</th><th>last decision</th><th>last 24 h</th></tr>
{{range .Rules}}<tr><td>{{.Rule}}</td><td>{{.Result}}</td><td>{{value .Signal .Value}}</td><td>{{value .Signal .Threshold}}</td><td>{{value .Signal .Resolve}}</td><td>{{.Window}}</td><td>{{.VolumeText}}</td><td>{{.Coverage}}</td><td>{{.ForText}}</td><td>{{.LastDecision}}</td><td><code>{{.Sparkline}}</code></td></tr>
{{end}}</table>{{end}}
` + legend + `
{{range .Charts}}{{.}}{{end}}
<p class="muted">Made by sentinel -explain.</p>
</body></html>
`))
