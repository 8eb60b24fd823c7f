package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestThumbprintRFC7638 is the RFC's own example (section 3.1).
func TestThumbprintRFC7638(t *testing.T) {
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	j, err := newJWK(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; j.Kid != want {
		t.Errorf("thumbprint %s, want %s", j.Kid, want)
	}
}

// TestThumbprintMatchesGoJose compares kid and key members with go-jose,
// an independent implementation, over generated keys of every type
// (EC keys whose coordinates have leading zero bytes included, by trying
// many).
func TestThumbprintMatchesGoJose(t *testing.T) {
	var keys []crypto.PublicKey
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, &rk.PublicKey)
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		for range 40 {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, &k.PublicKey)
		}
	}
	for range 10 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, pub)
	}
	for _, pub := range keys {
		j, err := newJWK(pub)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if want := base64.RawURLEncoding.EncodeToString(tp); j.Kid != want {
			t.Errorf("%T: kid %s, go-jose %s", pub, j.Kid, want)
		}
		b, err := jwksJSON(j)
		if err != nil {
			t.Fatal(err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("go-jose cannot read %s: %v", b, err)
		}
		if k := set.Keys[0]; !k.Valid() || !k.IsPublic() || k.Use != "sig" || k.KeyID != j.Kid {
			t.Errorf("go-jose reads %s as %+v", b, k)
		}
		if eq, ok := set.Keys[0].Key.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
			t.Errorf("go-jose reads another key from %s", b)
		}
	}
}

// FuzzReadPEMKey: any file is a key with a usable JWK or an error, never a
// panic; a key's default algorithm fits it and its JWK reads back (go-jose)
// as the same key.
func FuzzReadPEMKey(f *testing.F) {
	for _, name := range []string{"jwt-rs256.pem", "jwt-es256.pem", "ticket-ed25519.pem", "ticket-ed25519.pub.pem", "ticket-hs256.key"} {
		b, err := os.ReadFile(quickstartKeys + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := readPEMKey(data)
		if err != nil {
			return
		}
		if !k.fits(k.alg) {
			t.Fatalf("%s does not fit its own default %s", k.desc, k.alg)
		}
		j, err := newJWK(k.pub)
		if err != nil {
			t.Fatal(err)
		}
		if len(j.Kid) != 43 {
			t.Fatalf("thumbprint %q", j.Kid)
		}
		b, err := jwksJSON(j)
		if err != nil {
			t.Fatal(err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("go-jose cannot read %s: %v", b, err)
		}
		if eq, ok := set.Keys[0].Key.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(k.pub) {
			t.Fatalf("go-jose reads another key from %s", b)
		}
	})
}

// FuzzDescriptorFlag: a --descriptor value is refused or split into
// entries that print back as it was written.
func FuzzDescriptorFlag(f *testing.F) {
	for _, s := range []string{"a=b", "route=api,user=x", "k", "=v", "a=b,", "a==b", ",", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var d descriptorFlags
		if err := d.Set(v); err != nil {
			return
		}
		if len(d) != 1 || len(d[0].GetEntries()) != strings.Count(v, ",")+1 {
			t.Fatalf("%q: %d descriptors, %v", v, len(d), d)
		}
		parts := make([]string, 0, len(d[0].GetEntries()))
		for _, e := range d[0].GetEntries() {
			if e.GetKey() == "" {
				t.Fatalf("%q: entry without key", v)
			}
			parts = append(parts, e.GetKey()+"="+e.GetValue())
		}
		// An entry written without "=" has the empty value.
		want := strings.Split(v, ",")
		for i, p := range want {
			if !strings.Contains(p, "=") {
				want[i] = p + "="
			}
		}
		if got := strings.Join(parts, ","); got != strings.Join(want, ",") {
			t.Fatalf("%q prints back as %q", v, got)
		}
	})
}
