package backend_gcs

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
)

const testSigner = "roomstore-test@example.iam.gserviceaccount.com"

// throwawayKey returns a fresh RSA key and its PKCS#8 PEM encoding.
func throwawayKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func httpGet(t *testing.T, u string) (int, []byte) {
	t.Helper()
	code, _, body := httpGetHeader(t, u)
	return code, body
}

// httpGetHeader is httpGet that also returns the response's header.
func httpGetHeader(t *testing.T, u string) (int, http.Header, []byte) {
	t.Helper()
	return testserver.Get(t, u)
}

// v4RequestHash returns the hex SHA-256 of the V4 canonical request of a
// signed GET URL with only the host header signed, as the server rebuilds
// it from the URL it receives: every query parameter but the signature
// is part of it, so the hash matches the string to sign only when each of
// them was signed.
func v4RequestHash(t *testing.T, u *url.URL) string {
	t.Helper()
	q := u.Query()
	q.Del("X-Goog-Signature")
	canonical := strings.Join([]string{
		http.MethodGet,
		u.EscapedPath(),
		strings.ReplaceAll(q.Encode(), "+", "%20"),
		"host:" + u.Hostname(),
		"",
		"host",
		"UNSIGNED-PAYLOAD",
	}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:])
}

func TestPresign(t *testing.T) {
	ep := newServer(t)
	key, keyPEM := throwawayKey(t)

	t.Run("a V4 URL signed with a private key serves the file to a plain GET", func(t *testing.T) {
		s := newStore(t, ep, "p", WithSigner(testSigner, keyPEM))
		data := randBytes(testChunk+9, 5)
		mustCreate(t, s, "dir/file.bin", data)
		raw, err := s.Presign(t.Context(), "dir/file.bin", backend.PresignOptions{Expiry: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := url.Parse(ep); u.Scheme != want.Scheme || u.Host != want.Host {
			t.Errorf("URL %s does not point at the emulator %s", raw, ep)
		}
		q := u.Query()
		for k, want := range map[string]string{"X-Goog-Algorithm": "GOOG4-RSA-SHA256", "X-Goog-Expires": "600", "X-Goog-SignedHeaders": "host"} {
			if q.Get(k) != want {
				t.Errorf("%s = %q, want %q", k, q.Get(k), want)
			}
		}
		if !strings.HasPrefix(q.Get("X-Goog-Credential"), testSigner+"/") || q.Get("X-Goog-Signature") == "" {
			t.Errorf("URL lacks the credential or signature: %s", raw)
		}
		if q.Has("response-content-disposition") {
			t.Errorf("URL asks for a Content-Disposition nobody wanted: %s", raw)
		}
		code, body := httpGet(t, raw)
		if code != http.StatusOK {
			t.Fatalf("GET presigned URL: %d %s", code, body)
		}
		mustEqual(t, "presigned GET", body, data)
	})

	t.Run("a SignBytes function signs the URL", func(t *testing.T) {
		var signed [][]byte
		sign := func(p []byte) ([]byte, error) {
			signed = append(signed, p)
			sum := sha256.Sum256(p)
			return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		}
		s := newStore(t, ep, "p", WithSignBytes(testSigner, sign))
		mustCreate(t, s, "f", []byte("hello"))
		raw, err := s.Presign(t.Context(), "f", backend.PresignOptions{Expiry: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if len(signed) != 1 || !strings.HasPrefix(string(signed[0]), "GOOG4-RSA-SHA256\n") {
			t.Fatalf("sign called %d times with %q", len(signed), signed)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := hex.DecodeString(u.Query().Get("X-Goog-Signature"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(signed[0])
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("X-Goog-Signature is not the signature of the string to sign: %v", err)
		}
		if code, body := httpGet(t, raw); code != http.StatusOK || string(body) != "hello" {
			t.Fatalf("GET = %d %q", code, body)
		}
	})

	t.Run("a content disposition is signed into the URL and served", func(t *testing.T) {
		var toSign []byte
		sign := func(p []byte) ([]byte, error) {
			toSign = p
			sum := sha256.Sum256(p)
			return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		}
		s := newStore(t, ep, "p", WithSignBytes(testSigner, sign))
		mustCreate(t, s, "dir/report.csv", []byte("a,b\n"))
		const cd = `attachment; filename="report 2024.csv"; filename*=UTF-8''report%202024.csv`
		raw, err := s.Presign(t.Context(), "dir/report.csv", backend.PresignOptions{Expiry: time.Minute, ContentDisposition: cd})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.Query()["response-content-disposition"]; len(got) != 1 || got[0] != cd {
			t.Fatalf("response-content-disposition = %q, want [%q]", got, cd)
		}
		lines := strings.Split(string(toSign), "\n")
		if got, want := lines[len(lines)-1], v4RequestHash(t, u); got != want {
			t.Fatalf("the string to sign hashes canonical request %s, the URL's is %s: the disposition is not signed", got, want)
		}
		code, h, body := httpGetHeader(t, raw)
		if code != http.StatusOK || string(body) != "a,b\n" {
			t.Fatalf("GET = %d %q", code, body)
		}
		if got := h.Get("Content-Disposition"); got != cd {
			t.Fatalf("Content-Disposition = %q, want %q", got, cd)
		}
	})

	t.Run("without a signing identity Presign is unsupported", func(t *testing.T) {
		s := newStore(t, ep, "p")
		mustCreate(t, s, "f", []byte("x"))
		if _, err := s.Presign(t.Context(), "f", backend.PresignOptions{Expiry: time.Minute}); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("Presign = %v, want errors.ErrUnsupported", err)
		}
	})

	t.Run("an expiry outside (0, 7 days] is ErrInvalid", func(t *testing.T) {
		s := newStore(t, ep, "p", WithSigner(testSigner, keyPEM))
		for _, d := range []time.Duration{0, -time.Second, 7*24*time.Hour + time.Second} {
			if _, err := s.Presign(t.Context(), "f", backend.PresignOptions{Expiry: d}); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("Presign(%v) = %v, want fs.ErrInvalid", d, err)
			}
		}
	})

	t.Run("URLs use the client's endpoint host over HTTPS unless told otherwise", func(t *testing.T) {
		s := newStore(t, ep, "p")
		b, err := New(s.client, s.bucket, "p", WithSigner(testSigner, keyPEM))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := b.Presign(t.Context(), "f", backend.PresignOptions{Expiry: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := url.Parse(ep); u.Scheme != "https" || u.Host != want.Host || u.Path != "/"+s.bucket+"/p/f" {
			t.Fatalf("URL = %s, want https://%s/%s/p/f", raw, want.Host, s.bucket)
		}
	})
}
