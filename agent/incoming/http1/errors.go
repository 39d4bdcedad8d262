package http1

import (
	"errors"
	"fmt"
)

// Error is a message the agent refuses to forward. Status is the answer a
// client gets for a refused request; a refused response is a 502.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("http1: %d %s: %s", e.Status, statusText(e.Status), e.Reason)
}

func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// Statuses the package answers with itself.
const (
	statusBadRequest          = 400
	statusRequestTimeout      = 408
	statusHeadersTooLarge     = 431
	statusNotImplemented      = 501
	statusBadGateway          = 502
	statusVersionNotSupported = 505
)

func statusText(code int) string {
	switch code {
	case statusBadRequest:
		return "Bad Request"
	case statusRequestTimeout:
		return "Request Timeout"
	case statusHeadersTooLarge:
		return "Request Header Fields Too Large"
	case statusNotImplemented:
		return "Not Implemented"
	case statusBadGateway:
		return "Bad Gateway"
	case statusVersionNotSupported:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

// asResponseError turns a refusal found in a response into a 502: the
// client did nothing wrong.
func asResponseError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Status: statusBadGateway, Reason: "response: " + e.Reason}
	}
	return err
}
