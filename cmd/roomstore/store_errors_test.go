package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// An object store that cannot be used says why in one line: no
// credentials, or no server, as soon as that is known.
func TestObjectStoreErrorsNameTheCause(t *testing.T) {
	// An instance metadata service that refuses everything, as one does
	// for a machine with no role (or a network that blocks it).
	var asked atomic.Int64
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	t.Cleanup(imds.Close)
	home := t.TempDir()
	noCredentials := map[string]string{
		"HOME":                                   home,
		"AWS_CONFIG_FILE":                        filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(home, "no-credentials"),
		"AWS_EC2_METADATA_SERVICE_ENDPOINT":      imds.URL,
		"AWS_EC2_METADATA_DISABLED":              "",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_PROFILE":                            "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
	}
	withCredentials := map[string]string{"AWS_ACCESS_KEY_ID": "roomstore", "AWS_SECRET_ACCESS_KEY": "roomstore", "AWS_CONFIG_FILE": filepath.Join(home, "no-config")}
	const s3URL = "s3://b/p?region=us-east-1&endpoint=http://127.0.0.1:1&path_style=true"
	const gsURL = "gs://b/p?endpoint=http://127.0.0.1:1"
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"s3 with no credentials", noCredentials, []string{"--store", s3URL, "ls"},
			"--store " + s3URL + ": permission denied: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; an endpoint= server needs them too)"},
		{"s3 with no server", withCredentials, []string{"--store", s3URL, "ls"},
			"--store " + s3URL + ": dial tcp 127.0.0.1:1: connect: connection refused"},
		// The timeout is far longer than the refused connection's few
		// retries take: a store that waited it out would say that it got
		// no answer in time.
		{"gs with no server", nil, []string{"--timeout", "20s", "--store", gsURL, "ls"},
			"ls /: dial tcp 127.0.0.1:1: connect: connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			line := failedWithOneLine(t, runCmd(t, procOptions{env: c.env, dir: t.TempDir()}, c.args...))
			if line != c.want {
				t.Errorf("said %q\n    want %q", line, c.want)
			}
		})
	}
	if asked.Load() == 0 {
		t.Error("the instance metadata service was never asked: the case without credentials tested nothing")
	}
}
