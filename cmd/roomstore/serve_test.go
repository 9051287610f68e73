package main

import (
	"net/url"
	"strings"
	"testing"
)

func TestStoreTemplateRefusesWhatCouldMixOrEscapeRooms(t *testing.T) {
	for _, c := range []struct{ store, want string }{
		{"file:///var/lib/rooms", "has no {room}"},
		{"s3://bucket/prefix", "has no {room}"},
		{"mem://shared", "has no {room}"},
		{"ftp://host/{room}", "unknown scheme"},
		{"s3://{room}/prefix", "only appear in the URL's path"},
		{"file:///rooms/{room}?fsync={room}", "only appear in the URL's path"},
		{"gs://bucket/x#{room}", "only appear in the URL's path"},
		{"file://%zz/{room}", "is not a URL"},
	} {
		if _, err := parseStoreTemplate(c.store); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.store, err, c.want)
		}
	}
	for _, ok := range []string{"mem://", "mem://rooms/{room}", "file://./roomstore-data/{room}", "file:///srv/{room}/files?fsync=false", "s3://bucket/rooms/{room}?region=eu-west-1", "gs://bucket/{room}"} {
		if _, err := parseStoreTemplate(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestStoreTemplatePutsTheRoomNameInOnePathElementExactly(t *testing.T) {
	rooms := []string{"r1", "with space", "%41", "q?x", "h#x", "a+b", `quo"te`, "emoji 🎉", "x..", "semi;colon", "colon:x", "at@x"}
	for _, tmpl := range []string{"file://./data/{room}", "file:///srv/rooms/{room}/files?fsync=false", "s3://bucket/rooms/{room}?region=us-east-1", "gs://bucket/{room}", "mem://rooms/{room}"} {
		st, err := parseStoreTemplate(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		want0, _ := url.Parse(strings.ReplaceAll(tmpl, "{room}", "ROOM"))
		for _, room := range rooms {
			u, err := url.Parse(st.url(room))
			if err != nil {
				t.Errorf("%s, room %q: %v", tmpl, room, err)
				continue
			}
			wantPath := strings.ReplaceAll(want0.Path, "ROOM", room)
			if u.Path != wantPath || u.Host != want0.Host || u.RawQuery != want0.RawQuery || u.Fragment != "" {
				t.Errorf("%s, room %q: host %q path %q query %q fragment %q; want host %q path %q query %q",
					tmpl, room, u.Host, u.Path, u.RawQuery, u.Fragment, want0.Host, wantPath, want0.RawQuery)
			}
		}
	}
}
