package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/roomstore/roomstore/internal/tusclient"
)

// defaultResumableThreshold is put's --resumable-threshold: a file this
// big or bigger goes to a room server over tus, which resumes after a
// dropped connection rather than start again.
const defaultResumableThreshold = 8 << 20

// tusEndpoint is the tus endpoint of the room that a --store of a room
// server names: ws://HOST/rooms/ROOM gives http://HOST/tus/ROOM/.
func tusEndpoint(store string) (string, error) {
	u, err := url.Parse(store)
	if err != nil {
		return "", fmt.Errorf("--store: %s is not a URL", redactedURL(store))
	}
	room, ok := strings.CutPrefix(u.Path, roomsPrefix)
	if u.Host == "" || !ok || room == "" || strings.Contains(room, "/") {
		return "", fmt.Errorf("--store %s: want ws://HOST:PORT/rooms/ROOM", (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
	}
	scheme := "http"
	if s := strings.ToLower(u.Scheme); s == "wss" || s == "https" {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: u.Host, Path: tusPrefix + room + "/"}).String(), nil
}

// tusPut uploads the local file f of size bytes to p in the room --store
// names, over tus: a dropped connection is resumed from the offset the
// server kept (a bounded number of times in a row, with a growing pause),
// a refusal ends it at once, and an upload that fails is abandoned
// (DELETE). The file appears at p when its last byte arrives, with one
// event.
func tusPut(ctx context.Context, sf *storeFlags, f *os.File, size int64, p string, overwrite bool, bar *progress) error {
	endpoint, err := tusEndpoint(sf.target())
	if err != nil {
		return err
	}
	token := sf.token
	if token == "" {
		token = os.Getenv(tokenEnv)
	}
	if token == "" {
		return fmt.Errorf("--store %s: a room server needs a participant token: give --token or set %s (see roomstore token)", sf.target(), tokenEnv)
	}
	c := &tusclient.Client{
		HTTP:     &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		Token:    token,
		Progress: bar.set,
	}
	defer c.HTTP.CloseIdleConnections()
	meta := map[string]string{"path": p}
	if overwrite {
		meta["overwrite"] = "true"
	}
	loc, err := c.Upload(ctx, endpoint, io.ReaderAt(f), size, meta)
	if err != nil && loc != "" {
		// Nothing will resume it: its bytes go now rather than take
		// the room's quota until they expire.
		tctx, cancel := context.WithTimeout(context.Background(), abandonTimeout)
		defer cancel()
		_ = c.Terminate(tctx, loc)
	}
	return tusError(err, p)
}

// abandonTimeout bounds the DELETE of an upload put gave up.
const abandonTimeout = 5 * time.Second

// tusError is the error of a tus upload of p as the file commands show
// it: a refusal by the server's own one line (without its code, nor the
// operation and path put names itself), an existing file as fs.ErrExist,
// so that put says how to replace it.
func tusError(err error, p string) error {
	var se *tusclient.StatusError
	if !errors.As(err, &se) {
		return err
	}
	text := se.Text
	if _, rest, ok := strings.Cut(text, ": "); ok && strings.HasPrefix(text, "ERR_") {
		text = rest
	}
	if i := strings.Index(text, p+": "); i >= 0 && !strings.Contains(text[:i], ": ") {
		text = text[i+len(p)+2:]
	}
	switch se.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		if text == "forbidden" || se.Status == http.StatusUnauthorized {
			return errors.New("the room server refused the token (bad, expired, or for another room)")
		}
	case http.StatusConflict:
		if se.Method == http.MethodPost && text == fs.ErrExist.Error() {
			return fs.ErrExist
		}
	case http.StatusNotFound:
		if text == "no such room" {
			return errors.New("the server has no such room")
		}
	}
	if text == "" {
		text = http.StatusText(se.Status)
	}
	return errors.New(text)
}
