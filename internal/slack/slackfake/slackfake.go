// Package slackfake is a fake Slack for tests: the Web API methods sentinel
// calls and Socket Mode's WebSocket, over loopback, so that slack-go's real
// clients (the Web API client and the socketmode client) talk to it as they
// would to Slack.
//
// What it fakes:
//
//   - apps.connections.open, with the app-level token, answers the URL of
//     its WebSocket, which sends hello, pings the client as Slack does, and
//     delivers "interactive" envelopes (block_actions, view_submission)
//     that the test sends with Interact, returning the client's ack.
//   - chat.postMessage, chat.update, chat.postEphemeral, views.open and
//     usergroups.users.list, with the bot token. Messages and modals are
//     kept, so a test clicks the buttons of the message sentinel posted
//     (Click) and submits the modal it opened (Submit), with the payloads
//     Slack would send.
//
// Block Kit is validated as Slack does, to the limits its reference gives
// (ValidateBlocks, ValidateView): a message or modal that Slack would
// refuse is answered invalid_blocks. A trigger_id is good for one views.open
// within 3 seconds of the click, as Slack's.
//
// For the HTTP interactions endpoint, ClickPayload and SubmitPayload build
// the payloads and Sign signs a request as Slack does.
package slackfake

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Fixed identities of the fake workspace.
const (
	TeamID = "T0FAKE"
	AppID  = "A0FAKE"
	BotID  = "B0FAKE"
)

// TriggerTTL is how long a trigger_id may open a modal.
const TriggerTTL = 3 * time.Second

// Options configure a Server.
type Options struct {
	BotToken string // required on the Web API methods
	AppToken string // required on apps.connections.open
	// Groups are user groups: ID (S…) to member user IDs.
	Groups map[string][]string
	// PingInterval is how often the WebSocket pings the client; default
	// 200ms (slack-go gives up on a connection after 30s without one).
	PingInterval time.Duration
}

// User is a person who clicks.
type User struct{ ID, Name string }

// Message is a message sentinel posted, as it stands now.
type Message struct {
	Channel   string
	TS        string
	ThreadTS  string // "" for a message in the channel
	Text      string
	Blocks    json.RawMessage
	Broadcast bool
	Updates   int // chat.update calls on it
}

// Ephemeral is a message shown to one user only.
type Ephemeral struct {
	Channel, User, Text string
	Blocks              json.RawMessage
}

// View is a modal opened with views.open.
type View struct {
	ID   string
	User User
	View json.RawMessage // the view as sent, with its id added
}

// Call is one Web API call, as received.
type Call struct {
	Method string
	Form   url.Values      // form-encoded calls
	JSON   json.RawMessage // JSON calls
	Err    string          // the error answered, "" for ok
}

// Ack is a client's acknowledgement of an envelope.
type Ack struct {
	Payload json.RawMessage // nil when the ack carried none
	After   time.Duration   // from sending the envelope to the ack
}

// Server is the fake Slack.
type Server struct {
	opts Options
	srv  *httptest.Server

	mu         sync.Mutex
	seq        int
	messages   map[string]*Message // by ts
	order      []string            // ts in posting order
	ephemerals []Ephemeral
	views      map[string]*View
	triggers   map[string]trigger
	calls      []Call
	conns      []*wsConn
	acks       map[string]chan Ack
	connected  chan struct{} // closed and replaced at each hello
	connects   int
	closed     bool
	wg         sync.WaitGroup
}

type trigger struct {
	user    User
	expires time.Time
}

// New starts a fake Slack on loopback.
func New(opts Options) *Server {
	if opts.PingInterval == 0 {
		opts.PingInterval = 200 * time.Millisecond
	}
	s := &Server{
		opts:      opts,
		messages:  map[string]*Message{},
		views:     map[string]*View{},
		triggers:  map[string]trigger{},
		acks:      map[string]chan Ack{},
		connected: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.api)
	mux.HandleFunc("/link/", s.link)
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the Web API base URL, for slack-go's OptionAPIURL.
func (s *Server) URL() string { return s.srv.URL + "/api/" }

// Close closes every WebSocket and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	s.srv.Close()
	s.wg.Wait()
}

// ---- Web API

func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	call := Call{Method: method}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		call.JSON = body
	} else {
		call.Form, _ = url.ParseQuery(string(body))
		if q := r.URL.Query(); len(q) > 0 {
			for k, v := range q {
				call.Form[k] = v
			}
		}
		if t := call.Form.Get("token"); t != "" {
			token = t
		}
	}
	var answer map[string]any
	want := s.opts.BotToken
	if method == "apps.connections.open" {
		want = s.opts.AppToken
	}
	if token == "" || token != want {
		answer = fail("invalid_auth")
	} else {
		s.mu.Lock()
		answer = s.answer(r, method, call)
		s.mu.Unlock()
	}
	if ok, _ := answer["ok"].(bool); !ok {
		call.Err, _ = answer["error"].(string)
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

func fail(code string) map[string]any { return map[string]any{"ok": false, "error": code} }

// answer serves one authorised call. s.mu is held.
func (s *Server) answer(r *http.Request, method string, call Call) map[string]any {
	f := call.Form
	switch method {
	case "apps.connections.open":
		u := "ws://" + r.Host + "/link/?ticket=" + s.next("ticket")
		return map[string]any{"ok": true, "url": u}
	case "chat.postMessage":
		if f.Get("channel") == "" {
			return fail("channel_not_found")
		}
		if f.Get("text") == "" && f.Get("blocks") == "" {
			return fail("no_text")
		}
		if err := validateMessageBlocks(f.Get("blocks")); err != nil {
			return fail("invalid_blocks")
		}
		m := &Message{Channel: channelID(f.Get("channel")), TS: s.ts(), ThreadTS: f.Get("thread_ts"), Text: f.Get("text"),
			Blocks: json.RawMessage(f.Get("blocks")), Broadcast: f.Get("reply_broadcast") == "true"}
		if m.ThreadTS != "" && s.messages[m.ThreadTS] == nil {
			return fail("thread_not_found")
		}
		s.messages[m.TS] = m
		s.order = append(s.order, m.TS)
		return map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS}
	case "chat.update":
		m := s.messages[f.Get("ts")]
		if m == nil || m.Channel != f.Get("channel") {
			return fail("message_not_found")
		}
		if err := validateMessageBlocks(f.Get("blocks")); err != nil {
			return fail("invalid_blocks")
		}
		if f.Has("text") {
			m.Text = f.Get("text")
		}
		if f.Has("blocks") {
			m.Blocks = json.RawMessage(f.Get("blocks"))
		}
		m.Updates++
		return map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text}
	case "chat.postEphemeral":
		if f.Get("channel") == "" || f.Get("user") == "" {
			return fail("channel_not_found")
		}
		if err := validateMessageBlocks(f.Get("blocks")); err != nil {
			return fail("invalid_blocks")
		}
		s.ephemerals = append(s.ephemerals, Ephemeral{Channel: f.Get("channel"), User: f.Get("user"), Text: f.Get("text"), Blocks: json.RawMessage(f.Get("blocks"))})
		return map[string]any{"ok": true, "message_ts": s.ts()}
	case "views.open":
		var req struct {
			TriggerID string          `json:"trigger_id"`
			View      json.RawMessage `json:"view"`
		}
		if err := json.Unmarshal(call.JSON, &req); err != nil {
			return fail("invalid_arguments")
		}
		tr, ok := s.triggers[req.TriggerID]
		switch {
		case !ok:
			return fail("invalid_trigger_id")
		case time.Now().After(tr.expires):
			return fail("expired_trigger_id")
		}
		delete(s.triggers, req.TriggerID)
		if err := ValidateView(req.View); err != nil {
			return fail("invalid_blocks")
		}
		var view map[string]any
		json.Unmarshal(req.View, &view) //nolint:errcheck // validated above
		v := &View{ID: s.next("V"), User: tr.user}
		view["id"] = v.ID
		v.View, _ = json.Marshal(view)
		s.views[v.ID] = v
		return map[string]any{"ok": true, "view": view}
	case "usergroups.users.list":
		members, ok := s.opts.Groups[f.Get("usergroup")]
		if !ok {
			return fail("no_such_subteam")
		}
		return map[string]any{"ok": true, "users": members}
	}
	return fail("unknown_method")
}

// next returns a new identifier with prefix. s.mu is held.
func (s *Server) next(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%06d", prefix, s.seq)
}

// ts returns a new message timestamp. s.mu is held.
func (s *Server) ts() string {
	s.seq++
	return fmt.Sprintf("1700000000.%06d", s.seq)
}

var channelRE = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)

// channelID is the ID Slack answers for a channel given by ID or name.
func channelID(ch string) string {
	if channelRE.MatchString(ch) {
		return ch
	}
	return "C0" + strings.ToUpper(hex.EncodeToString([]byte(strings.TrimPrefix(ch, "#"))))
}

// Messages returns the messages posted, in posting order, as they stand.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, len(s.order))
	for _, ts := range s.order {
		out = append(out, *s.messages[ts])
	}
	return out
}

// Message returns the message ts as it stands.
func (s *Server) Message(ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[ts]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Ephemerals returns the ephemeral messages shown, oldest first.
func (s *Server) Ephemerals() []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ephemeral(nil), s.ephemerals...)
}

// Views returns the modals opened, oldest first.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []View
	for i := 1; i <= s.seq; i++ {
		if v, ok := s.views[fmt.Sprintf("V%06d", i)]; ok {
			out = append(out, *v)
		}
	}
	return out
}

// Calls returns the Web API calls of method ("" for all), oldest first.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// ---- Socket Mode

// wsConn is one Socket Mode connection; writes are serialized.
type wsConn struct {
	mu   sync.Mutex
	c    *websocket.Conn
	done chan struct{}
	once sync.Once
}

func (c *wsConn) write(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.c.WriteJSON(v)
}

func (c *wsConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.c.Close()
	})
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) link(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("ticket") == "" {
		http.Error(w, "no ticket", http.StatusUnauthorized)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{c: ws, done: make(chan struct{})}
	// Hello first: nothing else is sent on a connection before it.
	err = c.write(map[string]any{
		"type": "hello", "num_connections": 1,
		"connection_info": map[string]any{"app_id": AppID},
		"debug_info":      map[string]any{"host": "fake", "approximate_connection_time": 3600},
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || err != nil {
		c.close()
		return
	}
	s.conns = append(s.conns, c)
	s.connects++
	close(s.connected)
	s.connected = make(chan struct{})
	s.wg.Add(2)
	go s.read(c)
	go s.ping(c)
}

// read takes acks off c until it closes.
func (s *Server) read(c *wsConn) {
	defer s.wg.Done()
	defer s.drop(c)
	for {
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := c.c.ReadJSON(&ack); err != nil {
			return
		}
		s.mu.Lock()
		ch := s.acks[ack.EnvelopeID]
		delete(s.acks, ack.EnvelopeID)
		s.mu.Unlock()
		if ch != nil {
			ch <- Ack{Payload: ack.Payload}
		}
	}
}

func (s *Server) ping(c *wsConn) {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			c.mu.Lock()
			err := c.c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
			c.mu.Unlock()
			if err != nil {
				c.close()
				return
			}
		}
	}
}

func (s *Server) drop(c *wsConn) {
	c.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.conns {
		if x == c {
			s.conns = append(s.conns[:i], s.conns[i+1:]...)
			break
		}
	}
}

// WaitConnected waits until a Socket Mode client is connected (after
// hello), or ctx ends.
func (s *Server) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		ok := len(s.conns) > 0
		ch := s.connected
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no socket mode connection: %w", ctx.Err())
		case <-ch:
		}
	}
}

// Connects counts the Socket Mode connections made so far.
func (s *Server) Connects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects
}

// Disconnect closes every Socket Mode connection, as a network failure
// would; the client is expected to reconnect.
func (s *Server) Disconnect() {
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Interact sends payload as an "interactive" envelope over the Socket
// Mode connection and waits for its ack.
func (s *Server) Interact(ctx context.Context, payload []byte) (Ack, error) {
	s.mu.Lock()
	if len(s.conns) == 0 {
		s.mu.Unlock()
		return Ack{}, errors.New("no socket mode connection")
	}
	c := s.conns[len(s.conns)-1]
	id := s.next("env-")
	ch := make(chan Ack, 1)
	s.acks[id] = ch
	s.mu.Unlock()
	start := time.Now()
	err := c.write(map[string]any{
		"type": "interactive", "envelope_id": id, "payload": json.RawMessage(payload),
		"accepts_response_payload": true,
	})
	if err != nil {
		return Ack{}, fmt.Errorf("send envelope: %w", err)
	}
	select {
	case a := <-ch:
		a.After = time.Since(start)
		return a, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.acks, id)
		s.mu.Unlock()
		return Ack{}, fmt.Errorf("no ack for %s: %w", id, ctx.Err())
	}
}

// Click clicks the button actionID of message ts as it stands now, as
// user, over Socket Mode.
func (s *Server) Click(ctx context.Context, user User, ts, actionID string) (Ack, error) {
	p, err := s.ClickPayload(user, ts, actionID)
	if err != nil {
		return Ack{}, err
	}
	return s.Interact(ctx, p)
}

// Submit submits modal viewID as user, with values for its input blocks
// by block ID, over Socket Mode.
func (s *Server) Submit(ctx context.Context, user User, viewID string, values map[string]string) (Ack, error) {
	p, err := s.SubmitPayload(user, viewID, values)
	if err != nil {
		return Ack{}, err
	}
	return s.Interact(ctx, p)
}

// ClickPayload is the block_actions payload Slack sends when user clicks
// the button actionID of message ts. It issues a trigger_id good for one
// views.open within TriggerTTL.
func (s *Server) ClickPayload(user User, ts, actionID string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messages[ts]
	if m == nil {
		return nil, fmt.Errorf("no message %s", ts)
	}
	var blocks []map[string]any
	if err := json.Unmarshal(m.Blocks, &blocks); err != nil {
		return nil, fmt.Errorf("message %s blocks: %w", ts, err)
	}
	var action map[string]any
	for _, b := range blocks {
		if b["type"] != "actions" {
			continue
		}
		els, _ := b["elements"].([]any)
		for _, e := range els {
			el, _ := e.(map[string]any)
			if el["action_id"] == actionID {
				action = map[string]any{
					"type": el["type"], "action_id": actionID, "block_id": b["block_id"], "text": el["text"],
					"value": el["value"], "style": el["style"], "action_ts": s.ts(),
				}
			}
		}
	}
	if action == nil {
		return nil, fmt.Errorf("message %s has no button %s", ts, actionID)
	}
	trig := s.next("trigger.")
	s.triggers[trig] = trigger{user: user, expires: time.Now().Add(TriggerTTL)}
	msg := map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "blocks": json.RawMessage(m.Blocks), "bot_id": BotID}
	container := map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": false}
	if m.ThreadTS != "" {
		msg["thread_ts"] = m.ThreadTS
		container["thread_ts"] = m.ThreadTS
	}
	return json.Marshal(map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": user.ID, "username": user.Name, "name": user.Name, "team_id": TeamID},
		"api_app_id":   AppID,
		"token":        "fake-verification-token",
		"container":    container,
		"trigger_id":   trig,
		"team":         map[string]any{"id": TeamID, "domain": "fake"},
		"channel":      map[string]any{"id": m.Channel, "name": "compliance"},
		"message":      msg,
		"response_url": "http://" + s.srv.Listener.Addr().String() + "/response/" + trig,
		"actions":      []any{action},
		"state":        map[string]any{"values": map[string]any{}},
	})
}

// SubmitPayload is the view_submission payload Slack sends when user
// submits modal viewID with values for its input blocks, by block ID.
func (s *Server) SubmitPayload(user User, viewID string, values map[string]string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.views[viewID]
	if v == nil {
		return nil, fmt.Errorf("no view %s", viewID)
	}
	var view map[string]any
	if err := json.Unmarshal(v.View, &view); err != nil {
		return nil, err
	}
	state := map[string]any{}
	blocks, _ := view["blocks"].([]any)
	for _, b := range blocks {
		blk, _ := b.(map[string]any)
		if blk["type"] != "input" {
			continue
		}
		id, _ := blk["block_id"].(string)
		el, _ := blk["element"].(map[string]any)
		aid, _ := el["action_id"].(string)
		val, ok := values[id]
		if !ok {
			continue
		}
		state[id] = map[string]any{aid: map[string]any{"type": el["type"], "value": val}}
	}
	view["state"] = map[string]any{"values": state}
	view["hash"] = s.next("hash.")
	view["team_id"] = TeamID
	view["app_id"] = AppID
	view["bot_id"] = BotID
	return json.Marshal(map[string]any{
		"type":       "view_submission",
		"team":       map[string]any{"id": TeamID, "domain": "fake"},
		"user":       map[string]any{"id": user.ID, "username": user.Name, "name": user.Name, "team_id": TeamID},
		"api_app_id": AppID,
		"token":      "fake-verification-token",
		"trigger_id": s.next("trigger."),
		"view":       view,
	})
}

// Sign returns the X-Slack-Signature of body sent at ts with secret, as
// Slack computes it: v0=hex(HMAC-SHA256(secret, "v0:<ts>:<body>")).
func Sign(secret string, ts time.Time, body []byte) string {
	h := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(h, "v0:%d:", ts.Unix())
	h.Write(body)
	return "v0=" + hex.EncodeToString(h.Sum(nil))
}

// SignedRequest is the POST Slack sends to an interactions URL: payload
// form-encoded, signed with secret at ts.
func SignedRequest(target, secret string, ts time.Time, payload []byte) *http.Request {
	body := url.Values{"payload": {string(payload)}}.Encode()
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("X-Slack-Signature", Sign(secret, ts, []byte(body)))
	return r
}
