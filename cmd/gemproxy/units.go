package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gemproxy/gemproxy/internal/proxy"
)

// Size is a byte count written as an integer or a string with a binary
// unit: 500MiB, 10GiB, 64KiB, 1024, "1024B".
type Size int64

// The units a Size may be written in.
const (
	// KiB is 1024 bytes.
	KiB Size = 1 << 10
	// MiB is 1024 KiB.
	MiB Size = 1 << 20
	// GiB is 1024 MiB.
	GiB Size = 1 << 30
	// TiB is 1024 GiB.
	TiB Size = 1 << 40
)

// sizeUnits lists the units of Size from largest to smallest.
func sizeUnits() []struct {
	name string
	mult Size
} {
	return []struct {
		name string
		mult Size
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", 1}}
}

// UnmarshalText parses "10GiB", "500MiB", "64KiB", "1024B" or "1024".
func (s *Size) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	digits := strings.IndexFunc(str, func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(str)
	}
	n, err := strconv.ParseInt(str[:digits], 10, 64)
	unit := strings.TrimSpace(str[digits:])
	mult := Size(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits() {
		if strings.EqualFold(unit, u.name) {
			mult = u.mult
		}
	}
	if err != nil || mult == 0 {
		return fmt.Errorf("invalid size %q (want bytes, or a number with B, KiB, MiB, GiB or TiB)", string(text))
	}
	if Size(n) > Size(math.MaxInt64)/mult {
		return fmt.Errorf("invalid size %q: too large", string(text))
	}
	*s = Size(n) * mult
	return nil
}

// MarshalText writes s with the largest unit that divides it.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String writes s with the largest unit that divides it, e.g. "10GiB".
func (s Size) String() string {
	if s == 0 {
		return "0"
	}
	for _, u := range sizeUnits() {
		if s%u.mult == 0 {
			return strconv.FormatInt(int64(s/u.mult), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Duration is a time.Duration written as a Go duration string ("60s",
// "10m", "1h30m") or "unlimited" (a bound that never runs out).
type Duration time.Duration

// unlimited is how a Duration of proxy.Unlimited is written.
const unlimited = "unlimited"

// UnmarshalText parses a Go duration string or "unlimited".
func (d *Duration) UnmarshalText(text []byte) error {
	if string(text) == unlimited {
		*d = Duration(proxy.Unlimited)
		return nil
	}
	v, err := time.ParseDuration(string(text))
	if err != nil {
		if _, numErr := strconv.ParseInt(string(text), 10, 64); numErr == nil {
			return fmt.Errorf("invalid duration %q: missing unit (e.g. \"%ss\")", string(text), string(text))
		}
		return fmt.Errorf("invalid duration %q", string(text))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String writes d as a Go duration string, or "unlimited".
func (d Duration) String() string {
	if time.Duration(d) == proxy.Unlimited {
		return unlimited
	}
	return time.Duration(d).String()
}
