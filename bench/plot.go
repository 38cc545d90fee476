package bench

import (
	"bytes"
	"cmp"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"slices"
)

// The plot's size in pixels.
const (
	PlotWidth  = 900
	PlotHeight = 600
)

// plotPoint is one case: the rate the generator reached (offered) and the
// rate the output grew at (delivered).
type plotPoint struct{ offered, delivered float64 }

// plotSeries is one daemon's points, by offered rate.
type plotSeries struct {
	name   string
	color  color.RGBA
	points []plotPoint
}

var plotColors = map[string]color.RGBA{
	Leitstand: {0x1f, 0x77, 0xb4, 0xff}, // blue
	Rsyslog:   {0xff, 0x7f, 0x0e, 0xff}, // orange
	SyslogNG:  {0x2c, 0xa0, 0x2c, 0xff}, // green
}

// udpSeries collects the UDP cases at a fixed rate (the overload case
// too) per daemon.
func (r *Results) udpSeries() []plotSeries {
	var out []plotSeries
	for _, d := range []string{Leitstand, Rsyslog, SyslogNG} {
		s := plotSeries{name: d, color: plotColors[d]}
		for _, x := range r.Summary {
			if x.Daemon != d || x.Path != PathUDP || x.OfferedRate <= 0 || x.Runs == 0 {
				continue
			}
			off := x.GeneratorPerSecond
			if off <= 0 {
				off = x.OfferedRate
			}
			s.points = append(s.points, plotPoint{off, x.EventsPerSecond})
		}
		slices.SortFunc(s.points, func(a, b plotPoint) int { return cmp.Compare(a.offered, b.offered) })
		if len(s.points) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// Plot draws delivered against offered rate of the UDP cases, one line per
// daemon, with the line where delivered equals offered, as a PNG. It
// returns an error when the results have no UDP case at a fixed rate.
func (r *Results) Plot() ([]byte, error) {
	series := r.udpSeries()
	if len(series) == 0 {
		return nil, fmt.Errorf("no UDP case at a fixed rate to plot")
	}
	img := image.NewRGBA(image.Rect(0, 0, PlotWidth, PlotHeight))
	white := color.RGBA{0xff, 0xff, 0xff, 0xff}
	black := color.RGBA{0, 0, 0, 0xff}
	grey := color.RGBA{0xc8, 0xc8, 0xc8, 0xff}
	fill(img, img.Bounds(), white)

	const left, right, top, bottom = 110, 50, 60, 80
	x0, x1, y0, y1 := left, PlotWidth-right, PlotHeight-bottom, top // y grows downwards
	var hi float64
	for _, s := range series {
		for _, p := range s.points {
			hi = max(hi, p.offered, p.delivered)
		}
	}
	step := niceStep(hi / 5)
	hi = math.Ceil(hi*1.05/step) * step
	px := func(v float64) int { return x0 + int(math.Round(v/hi*float64(x1-x0))) }
	py := func(v float64) int { return y0 - int(math.Round(v/hi*float64(y0-y1))) }

	// Grid, ticks and their labels.
	for v := 0.0; v <= hi+step/2; v += step {
		line(img, px(v), y0, px(v), y1, grey, 1)
		line(img, x0, py(v), x1, py(v), grey, 1)
		l := rateLabel(v)
		drawText(img, px(v)-textWidth(l)/2, y0+10, l, black, false)
		drawText(img, x0-12-textWidth(l), py(v)-textHeight/2, l, black, false)
	}
	// delivered = offered, dashed.
	for v := 0.0; v < hi; v += step / 8 {
		line(img, px(v), py(v), px(v+step/16), py(v+step/16), color.RGBA{0x80, 0x80, 0x80, 0xff}, 1)
	}
	line(img, x0, y0, x1, y0, black, 2)
	line(img, x0, y0, x0, y1, black, 2)

	// Each series' dots are smaller than the one's before, so that points
	// on top of each other stay visible as rings.
	for k, s := range series {
		for i, p := range s.points {
			if i > 0 {
				q := s.points[i-1]
				line(img, px(q.offered), py(q.delivered), px(p.offered), py(p.delivered), s.color, 3)
			}
		}
		for _, p := range s.points {
			disc(img, px(p.offered), py(p.delivered), 9-2*k, s.color)
		}
	}

	title := "SYSLOG OVER UDP: DELIVERED AGAINST OFFERED RATE"
	drawText(img, (PlotWidth-textWidth(title))/2, 20, title, black, false)
	xl := "OFFERED (MESSAGES/S THE GENERATOR SENT)"
	drawText(img, x0+(x1-x0-textWidth(xl))/2, PlotHeight-36, xl, black, false)
	yl := "DELIVERED (EVENTS/S IN THE OUTPUT)"
	drawText(img, 18, y0-(y0-y1-textWidth(yl))/2, yl, black, true)
	// Legend, top left inside the axes.
	lx, ly := x0+20, y1+16
	for _, s := range series {
		disc(img, lx+6, ly+textHeight/2, 6, s.color)
		drawText(img, lx+20, ly, s.name, black, false)
		ly += textHeight + 12
	}
	drawText(img, lx+20, ly, "- - DELIVERED = OFFERED", color.RGBA{0x80, 0x80, 0x80, 0xff}, false)

	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// niceStep rounds a grid step up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// rateLabel prints a rate for a tick: 0, 50K, 1.5M.
func rateLabel(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "K"
	}
	return fmt.Sprintf("%.0f", v)
}

func trimZero(s string) string {
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		return s[:len(s)-2]
	}
	return s
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// line draws from (xa, ya) to (xb, yb), w pixels wide.
func line(img *image.RGBA, xa, ya, xb, yb int, c color.RGBA, w int) {
	n := max(abs(xb-xa), abs(yb-ya), 1)
	for i := 0; i <= n; i++ {
		x := xa + (xb-xa)*i/n
		y := ya + (yb-ya)*i/n
		for dy := -(w - 1) / 2; dy <= w/2; dy++ {
			for dx := -(w - 1) / 2; dx <= w/2; dx++ {
				img.SetRGBA(x+dx, y+dy, c)
			}
		}
	}
}

// disc draws a filled circle.
func disc(img *image.RGBA, cx, cy, r int, c color.RGBA) {
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			if dx*dx+dy*dy <= r*r {
				img.SetRGBA(cx+dx, cy+dy, c)
			}
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
