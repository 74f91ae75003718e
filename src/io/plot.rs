//! PNG line charts and scatter plots (the trainer's `losses.png`, the lab's curves).
//!
//! Drawn by `plotters` into an in-memory RGB buffer and encoded by the `image` crate. Text
//! is DejaVu Sans, embedded in the binary (assets/fonts, Bitstream Vera licence), laid out
//! and rasterised by `ab_glyph` in [`TextBackend`], a thin wrapper over plotters' bitmap
//! backend: no system font library (fontconfig, freetype) is needed to build or to run.

use super::image_grid::write_png;
use super::{IoError, display_name};
use image::ExtendedColorType;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
pub use text::TextBackend;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Distinct colours for series and groups (matplotlib's "tab10").
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Title, axis labels and pixel size of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub width: u32,
    pub height: u32,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            title: String::new(),
            x_label: "step".to_string(),
            y_label: String::new(),
            width: 1000,
            height: 600,
            y_range: None,
        }
    }
}

impl PlotOptions {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        PlotOptions {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Default::default()
        }
    }

    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// The finite range of `values`, widened by 5% (and to a unit interval when empty or flat).
/// Magnitudes beyond 1e100 are left out so the axis arithmetic stays finite.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.abs() <= 1e100) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        let pad = 0.5 * lo.abs().max(1.0);
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// A usable axis range: finite, increasing.
fn sane_range((lo, hi): (f64, f64)) -> (f64, f64) {
    if lo.is_finite() && hi.is_finite() && lo < hi && hi - lo <= 1e200 {
        (lo, hi)
    } else {
        padded_range([lo, hi].into_iter())
    }
}

fn check_size(path: &Path, opts: &PlotOptions) -> Result<(), IoError> {
    if opts.width < 200 || opts.height < 150 || opts.width > 10_000 || opts.height > 10_000 {
        return Err(IoError::Encode {
            file: display_name(path),
            msg: format!(
                "plot size {}×{} is outside 200×150 ..= 10000×10000 pixels",
                opts.width, opts.height
            ),
        });
    }
    Ok(())
}

/// Render into an RGB buffer with `draw`, then write the PNG atomically.
fn render(
    path: &Path,
    opts: &PlotOptions,
    draw: impl FnOnce(&DrawingArea<TextBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<(), IoError> {
    check_size(path, opts)?;
    let (w, h) = (opts.width, opts.height);
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = TextBackend(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        draw(&root).and_then(|()| root.present().map_err(|e| e.to_string())).map_err(|msg| {
            IoError::Encode { file: display_name(path), msg: format!("cannot draw the plot: {msg}") }
        })?;
    }
    write_png(path, w, h, &buf, ExtendedColorType::Rgb8)
}

type Chart<'a, 'b> = ChartContext<'a, TextBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A tick label with as many decimals as the axis' tick spacing needs, never "-0".
fn tick_label(v: f64, span: f64) -> String {
    let step = span / 10.0;
    // A tick at "zero" computed as lo + k·step is often ±1e-16.
    let v = if v.abs() < step.abs() * 1e-6 { 0.0 } else { v };
    let decimals =
        if step > 0.0 && step.is_finite() { (-step.log10()).ceil().clamp(0.0, 9.0) as usize } else { 1 };
    let text = if v != 0.0 && (span >= 1e6 || (span < 1e-4 && v.abs() < 1e-3)) {
        format!("{v:.2e}")
    } else {
        format!("{v:.decimals$}")
    };
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// White background, title, axes with labelled ticks and a light grid.
fn frame<'a, 'b>(
    root: &'a DrawingArea<TextBackend<'b>, plotters::coord::Shift>,
    opts: &PlotOptions,
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Result<Chart<'a, 'b>, String> {
    let ((x_lo, x_hi), (y_lo, y_hi)) = (sane_range(x_range), sane_range(y_range));
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(root)
        .caption(&opts.title, (FAMILY, 22))
        .margin(12)
        .margin_right(32)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(|x| e(&x))?;
    let (x_span, y_span) = (x_hi - x_lo, y_hi - y_lo);
    // As many x tick labels as fit side by side (long labels such as 1000000000.5 get fewer).
    let x_chars = tick_label(x_lo, x_span).len().max(tick_label(x_hi, x_span).len()) as f64;
    let x_ticks = ((opts.width as f64 - 120.0) / (x_chars * 8.5 + 24.0)).floor().clamp(2.0, 10.0) as usize;
    chart
        .configure_mesh()
        .x_desc(opts.x_label.as_str())
        .y_desc(opts.y_label.as_str())
        .x_labels(x_ticks)
        .x_label_formatter(&|v| tick_label(*v, x_span))
        .y_label_formatter(&|v| tick_label(*v, y_span))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(|x| e(&x))?;
    Ok(chart)
}

/// The corner of the plot where a legend of `entries` labels covers the fewest points.
fn legend_corner(
    opts: &PlotOptions,
    entries: &[&str],
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
    points: impl Iterator<Item = (f64, f64)> + Clone,
) -> SeriesLabelPosition {
    // The legend's size as a fraction of the plotting area (estimated from the font size).
    let longest = entries.iter().map(|n| n.chars().count()).max().unwrap_or(0) as f64;
    let fw = ((longest * 9.0 + 60.0) / (opts.width as f64 - 100.0)).min(1.0);
    let fh = ((entries.len() as f64 * 20.0 + 16.0) / (opts.height as f64 - 110.0)).min(1.0);
    let (wx, wy) = ((x_hi - x_lo) * fw, (y_hi - y_lo) * fh);
    let corners = [
        (SeriesLabelPosition::UpperRight, x_hi - wx, x_hi, y_hi - wy, y_hi),
        (SeriesLabelPosition::UpperLeft, x_lo, x_lo + wx, y_hi - wy, y_hi),
        (SeriesLabelPosition::LowerRight, x_hi - wx, x_hi, y_lo, y_lo + wy),
        (SeriesLabelPosition::LowerLeft, x_lo, x_lo + wx, y_lo, y_lo + wy),
    ];
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (pos, x0, x1, y0, y1) in corners {
        let covered = points.clone().filter(|&(x, y)| x >= x0 && x <= x1 && y >= y0 && y <= y1).count();
        if covered < best.0 {
            best = (covered, pos);
        }
    }
    best.1
}

fn draw_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(120, 120, 120))
        .position(position)
        .margin(12)
        .draw()
        .map_err(|e| e.to_string())
}

/// A line chart of `series` (name, y values) against `x`, with a legend in the emptiest
/// corner. Non-finite points leave a gap in their line; series of at most 60 points get
/// markers. Series shorter than `x` are drawn over their own length.
pub fn plot_series(
    path: &Path,
    opts: &PlotOptions,
    x: &[f64],
    series: &[(&str, &[f64])],
) -> Result<(), IoError> {
    let x_range = sane_range(match (x.first(), x.last()) {
        (Some(&a), Some(&b)) if a.is_finite() && b.is_finite() && a < b => (a, b),
        _ => padded_range(x.iter().copied()),
    });
    let y_range =
        sane_range(opts.y_range.unwrap_or_else(|| {
            padded_range(series.iter().flat_map(|(_, ys)| ys.iter().copied().take(x.len())))
        }));
    let all_points = series.iter().flat_map(|(_, ys)| x.iter().copied().zip(ys.iter().copied()));
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    let corner = legend_corner(opts, &names, x_range, y_range, all_points);
    let markers = x.len() <= 60;
    render(path, opts, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = frame(root, opts, x_range, y_range)?;
        for (k, (name, ys)) in series.iter().enumerate() {
            let color = rgb(PALETTE[k % PALETTE.len()]);
            let points: Vec<(f64, f64)> = x.iter().copied().zip(ys.iter().copied()).collect();
            // Split at non-finite values; a run of one point shows as a dot.
            let segments = points.split(|(a, b)| !a.is_finite() || !b.is_finite()).filter(|s| !s.is_empty());
            let style = color.stroke_width(2);
            for seg in segments {
                chart.draw_series(LineSeries::new(seg.iter().copied(), style)).map_err(|x| e(&x))?;
                if markers || seg.len() == 1 {
                    chart
                        .draw_series(seg.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|x| e(&x))?;
                }
            }
            // The legend entry, once per series even when it has no finite point.
            chart
                .draw_series(LineSeries::new(std::iter::empty::<(f64, f64)>(), style))
                .map_err(|x| e(&x))?
                .label(*name)
                .legend(move |(lx, ly)| {
                    PathElement::new(vec![(lx, ly), (lx + 24, ly)], color.stroke_width(3))
                });
        }
        if !series.is_empty() {
            draw_legend(&mut chart, corner)?;
        }
        Ok(())
    })
}

/// One group of a scatter plot: its legend name, its points and its RGB colour.
pub type ScatterGroup<'a> = (&'a str, &'a [(f64, f64)], [u8; 3]);

/// A scatter plot: each group (name, points, RGB colour) in its own colour, with a legend in
/// the emptiest corner. Non-finite points are skipped.
pub fn scatter_plot(path: &Path, opts: &PlotOptions, groups: &[ScatterGroup<'_>]) -> Result<(), IoError> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let x_range = padded_range(groups.iter().flat_map(|(_, ps, _)| ps.iter().filter(finite).map(|p| p.0)));
    let y_range = sane_range(opts.y_range.unwrap_or_else(|| {
        padded_range(groups.iter().flat_map(|(_, ps, _)| ps.iter().filter(finite).map(|p| p.1)))
    }));
    let names: Vec<&str> = groups.iter().map(|g| g.0).collect();
    let corner =
        legend_corner(opts, &names, x_range, y_range, groups.iter().flat_map(|g| g.1.iter().copied()));
    let radius = if groups.iter().map(|g| g.1.len()).sum::<usize>() > 2000 { 2 } else { 3 };
    render(path, opts, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = frame(root, opts, x_range, y_range)?;
        for (name, points, c) in groups {
            let color = rgb(*c);
            chart
                .draw_series(
                    points.iter().filter(finite).map(|&p| Circle::new(p, radius, color.mix(0.7).filled())),
                )
                .map_err(|x| e(&x))?
                .label(*name)
                .legend(move |(lx, ly)| Circle::new((lx + 10, ly), 4, color.filled()));
        }
        if !groups.is_empty() {
            draw_legend(&mut chart, corner)?;
        }
        Ok(())
    })
}

/// Text from the embedded font, for plotters.
mod text {
    use super::FONT;
    use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
    use plotters::prelude::BitMapBackend;
    use plotters_backend::text_anchor::{HPos, VPos};
    use plotters_backend::{
        BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
    };
    use std::sync::OnceLock;

    fn font() -> &'static FontRef<'static> {
        static F: OnceLock<FontRef<'static>> = OnceLock::new();
        F.get_or_init(|| FontRef::try_from_slice(FONT).expect("assets/fonts/DejaVuSans.ttf is a valid font"))
    }

    /// One line of text laid out: the glyphs' coverage as (x, y, alpha) from the top-left of the
    /// line box, and the box's size.
    fn layout(text: &str, size: f64) -> (Vec<(i32, i32, f32)>, u32, u32) {
        let font = font();
        let scale = PxScale::from(size as f32);
        let scaled = font.as_scaled(scale);
        let ascent = scaled.ascent();
        let mut pixels = Vec::new();
        let mut caret = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(caret, ascent));
            caret += scaled.h_advance(id);
            if let Some(outline) = font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|x, y, a| {
                    if a > 0.0 {
                        pixels.push((b.min.x as i32 + x as i32, b.min.y as i32 + y as i32, a.min(1.0)));
                    }
                });
            }
        }
        let height = (ascent - scaled.descent()).ceil() as u32;
        (pixels, caret.ceil() as u32, height)
    }

    /// plotters' bitmap backend with text drawn from the embedded font: kerning, anti-aliasing,
    /// anchors and the four rotations (the y axis label is rotated by 270°).
    pub struct TextBackend<'a>(pub BitMapBackend<'a>);

    type BackendResult<E> = Result<(), DrawingErrorKind<E>>;

    impl<'a> DrawingBackend for TextBackend<'a> {
        type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

        fn get_size(&self) -> (u32, u32) {
            self.0.get_size()
        }
        fn ensure_prepared(&mut self) -> BackendResult<Self::ErrorType> {
            self.0.ensure_prepared()
        }
        fn present(&mut self) -> BackendResult<Self::ErrorType> {
            self.0.present()
        }
        fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> BackendResult<Self::ErrorType> {
            self.0.draw_pixel(point, color)
        }
        fn draw_line<S: BackendStyle>(
            &mut self,
            from: BackendCoord,
            to: BackendCoord,
            style: &S,
        ) -> BackendResult<Self::ErrorType> {
            self.0.draw_line(from, to, style)
        }
        fn draw_rect<S: BackendStyle>(
            &mut self,
            upper_left: BackendCoord,
            bottom_right: BackendCoord,
            style: &S,
            fill: bool,
        ) -> BackendResult<Self::ErrorType> {
            self.0.draw_rect(upper_left, bottom_right, style, fill)
        }
        fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            path: I,
            style: &S,
        ) -> BackendResult<Self::ErrorType> {
            self.0.draw_path(path, style)
        }
        fn draw_circle<S: BackendStyle>(
            &mut self,
            center: BackendCoord,
            radius: u32,
            style: &S,
            fill: bool,
        ) -> BackendResult<Self::ErrorType> {
            self.0.draw_circle(center, radius, style, fill)
        }
        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            vert: I,
            style: &S,
        ) -> BackendResult<Self::ErrorType> {
            self.0.fill_polygon(vert, style)
        }
        fn blit_bitmap(
            &mut self,
            pos: BackendCoord,
            size: (u32, u32),
            src: &[u8],
        ) -> BackendResult<Self::ErrorType> {
            self.0.blit_bitmap(pos, size, src)
        }

        fn estimate_text_size<T: BackendTextStyle>(
            &self,
            text: &str,
            style: &T,
        ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
            let (_, w, h) = layout(text, style.size());
            Ok((w, h))
        }

        fn draw_text<T: BackendTextStyle>(
            &mut self,
            text: &str,
            style: &T,
            pos: BackendCoord,
        ) -> BackendResult<Self::ErrorType> {
            let color = style.color();
            if color.alpha == 0.0 {
                return Ok(());
            }
            let (pixels, w, h) = layout(text, style.size());
            let (w, h) = (w as i32, h as i32);
            let anchor = style.anchor();
            let dx = match anchor.h_pos {
                HPos::Left => 0,
                HPos::Center => -w / 2,
                HPos::Right => -w,
            };
            let dy = match anchor.v_pos {
                VPos::Top => 0,
                VPos::Center => -h / 2,
                VPos::Bottom => -h,
            };
            let transform = style.transform();
            for (x, y, a) in pixels {
                let (tx, ty) = transform.transform(x + dx, y + dy);
                let c = BackendColor { alpha: color.alpha * a as f64, rgb: color.rgb };
                self.0.draw_pixel((pos.0 + tx, pos.1 + ty), c)?;
            }
            Ok(())
        }
    }
}
