package twiliofake

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// apiError is Twilio's JSON error body.
type apiError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %d: %s", e.Status, e.Code, e.Message) }

func newAPIError(status, code int, msg string) *apiError {
	return &apiError{Code: code, Message: msg, MoreInfo: fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), Status: status}
}

// badParam is a malformed request parameter: 400 with Twilio's generic
// "Bad request" code 70002.
func badParam(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, 70002, fmt.Sprintf(format, args...))
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, e)
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeAPIError(w, newAPIError(status, code, msg))
}

func notFound(w http.ResponseWriter, path string) {
	writeError(w, http.StatusNotFound, 20404, fmt.Sprintf("The requested resource %s was not found", path))
}

func methodNotAllowed(w http.ResponseWriter, method string) {
	writeError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed: "+method)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a programming error can get here: every value is plain data.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
