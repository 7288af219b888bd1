//! The picture: a self-contained SVG of the replay, for an incident review or a runbook page.
//!
//! Lanes share one wall-clock time axis, top to bottom: the primary pool's healthy ratio with
//! the emergency thresholds dashed, the emergency Deployment (desired, ready, serving), the
//! primary load balancer (what the world did and what the operator concluded), the share of
//! traffic on the primary ingress class, and scripted scenario facts. Policy-level actions are
//! labelled ticks under the axis with a faint guide through every lane, so cause and effect line
//! up vertically. Plain SVG 1.1 — no scripts, no external fonts or stylesheets — so it renders
//! the same in a browser, a wiki and `rsvg-convert`.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::engine::{ActionKind, Millis};

use super::run::{Row, Sample, Source, Timeline};
use super::table::{duration, wall_clock, wall_clock_full};

const WIDTH: f64 = 1280.0;
const LEFT: f64 = 240.0;
const RIGHT: f64 = 40.0;
const LANE_GAP: f64 = 22.0;
const LABEL_ROW: f64 = 15.0;
const MAX_LABEL_ROWS: usize = 10;
/// Approximate advance of one character at 11 px in a sans-serif font.
const CHAR_W: f64 = 6.3;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

const GREEN: &str = "#2e8b57";
const RED: &str = "#c62828";
const PURPLE: &str = "#7b3fa0";
const BLUE: &str = "#1f6fd1";
const ORANGE: &str = "#e07b00";
const GREY: &str = "#555555";

pub fn write(t: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(t).as_bytes())
}

/// Maps engine time to x.
struct Axis {
    start: Millis,
    end: Millis,
}

impl Axis {
    fn x(&self, ms: Millis) -> f64 {
        let span = (self.end - self.start).max(1) as f64;
        LEFT + (ms - self.start) as f64 / span * (WIDTH - LEFT - RIGHT)
    }
}

/// A labelled tick under the time axis.
struct Label {
    at: Millis,
    text: String,
    color: &'static str,
}

pub fn render(t: &Timeline) -> String {
    let axis = Axis {
        start: t.start,
        end: t.end,
    };
    let mut body = String::new();
    let lanes_top = 96.0;
    let mut y = primary_lane(&mut body, &axis, t, lanes_top);
    if t.cfg.emergency.is_some() {
        y = emergency_lane(&mut body, &axis, t, y);
    }
    if t.has_ingress {
        y = ingress_lanes(&mut body, &axis, t, y);
    }
    let lanes_bottom = events_lane(&mut body, &axis, t, y);
    time_axis(&mut body, &axis, t, lanes_top, lanes_bottom);
    let labels = action_labels(&axis, t, lanes_top, lanes_bottom);
    let head = header(t);
    assemble(t, &head, &body, &labels)
}

/// Lane 1: the primary pool's healthy ratio, the emergency thresholds, panic and frozen spans.
/// Each lane function draws from `y` and returns where the next lane starts.
fn primary_lane(body: &mut String, axis: &Axis, t: &Timeline, y: f64) -> f64 {
    let h = 150.0;
    lane_frame(body, y, h, "Primary pool", "healthy / total");
    percent_grid(body, y, h);
    // Fail-open panic and frozen spans: a faint wash over the lane plus a solid strip on top.
    let panic = |s: &Sample| s.panic;
    let frozen = |s: &Sample| s.phase == crate::api::Phase::Frozen;
    for (on, color) in [
        (&panic as &dyn Fn(&Sample) -> bool, ORANGE),
        (&frozen, GREY),
    ] {
        band(body, axis, &t.samples, y, h, on, color, 0.12);
        band(body, axis, &t.samples, y, 8.0, on, color, 0.85);
    }
    let ratio = |s: &Sample| s.primary_ratio();
    step_area(body, axis, &t.samples, y, h, 1.0, ratio, GREEN, 0.18);
    step_line(body, axis, &t.samples, y, h, 1.0, ratio, GREEN, 2.2, None);
    if t.cfg.emergency.is_some() {
        threshold(
            body,
            y,
            h,
            t.cfg.activate_below,
            RED,
            &format!("activate below {}", t.cfg.activate_below),
        );
        threshold(
            body,
            y,
            h,
            t.cfg.deactivate_above,
            GREEN,
            &format!("release at {}", t.cfg.deactivate_above),
        );
    }
    y + h + LANE_GAP
}

/// Lane 2: the emergency Deployment (desired, ready, serving).
fn emergency_lane(body: &mut String, axis: &Axis, t: &Timeline, y: f64) -> f64 {
    let h = 110.0;
    let top = t
        .samples
        .iter()
        .map(|s| {
            (s.emergency_desired.max(0) as u32)
                .max(s.emergency_ready)
                .max(s.emergency_healthy)
        })
        .max()
        .unwrap_or(0)
        .max(t.max_replicas.max(0) as u32)
        .max(1) as f64;
    lane_frame(body, y, h, "Emergency capacity", "pods / endpoints");
    count_grid(body, y, h, top);
    let ready = |s: &Sample| f64::from(s.emergency_ready);
    step_area(body, axis, &t.samples, y, h, top, ready, PURPLE, 0.16);
    let desired = |s: &Sample| f64::from(s.emergency_desired.max(0));
    step_line(
        body,
        axis,
        &t.samples,
        y,
        h,
        top,
        desired,
        PURPLE,
        1.6,
        Some("6 4"),
    );
    let serving = |s: &Sample| f64::from(s.emergency_published);
    step_line(
        body, axis, &t.samples, y, h, top, serving, PURPLE, 2.4, None,
    );
    y + h + LANE_GAP
}

/// Lanes 3 and 4: the primary load balancer (world and verdict) and where traffic goes.
fn ingress_lanes(body: &mut String, axis: &Axis, t: &Timeline, mut y: f64) -> f64 {
    let h = 44.0;
    lane_frame(body, y, h, "Primary load balancer", "world / verdict");
    band(
        body,
        axis,
        &t.samples,
        y + 4.0,
        16.0,
        |s| s.lb_up,
        GREEN,
        0.75,
    );
    band(
        body,
        axis,
        &t.samples,
        y + 4.0,
        16.0,
        |s| !s.lb_up,
        RED,
        0.75,
    );
    band(
        body,
        axis,
        &t.samples,
        y + 24.0,
        16.0,
        |s| s.lb_serving,
        GREEN,
        0.45,
    );
    band(
        body,
        axis,
        &t.samples,
        y + 24.0,
        16.0,
        |s| !s.lb_serving,
        RED,
        0.45,
    );
    small_text(
        body,
        LEFT + 6.0,
        y + 16.0,
        "health URL answers",
        "#ffffff",
        "start",
    );
    small_text(
        body,
        LEFT + 6.0,
        y + 36.0,
        "operator verdict",
        "#ffffff",
        "start",
    );
    y += h + LANE_GAP;

    let h = 80.0;
    lane_frame(body, y, h, "Traffic on primary class", "percent");
    percent_grid(body, y, h);
    let share = |s: &Sample| f64::from(s.primary_share) / 100.0;
    step_area(body, axis, &t.samples, y, h, 1.0, share, BLUE, 0.18);
    step_line(body, axis, &t.samples, y, h, 1.0, share, BLUE, 2.2, None);
    y += h + LANE_GAP;

    if t.samples.iter().any(|s| s.dns_primary_share.is_some()) {
        // What the DNS records say, and the spans a tier the records left keeps serving
        // (resolvers may still answer with it for one TTL).
        lane_frame(body, y, h, "DNS answers for primary", "percent · drain");
        percent_grid(body, y, h);
        band(
            body,
            axis,
            &t.samples,
            y,
            h,
            |s| s.draining.is_some(),
            ORANGE,
            0.16,
        );
        let dns = |s: &Sample| f64::from(s.dns_primary_share.unwrap_or(100)) / 100.0;
        step_line(
            body,
            axis,
            &t.samples,
            y,
            h,
            1.0,
            dns,
            BLUE,
            2.2,
            Some("5 3"),
        );
        y += h + LANE_GAP;
    }
    if t.samples.iter().any(|s| s.emergency_weight.is_some()) {
        // Weighted emergency capacity: its weight in the route copies, with the ramp's steps.
        lane_frame(body, y, h, "Emergency backend weight", "percent of theirs");
        percent_grid(body, y, h);
        let w = |s: &Sample| f64::from(s.emergency_weight.unwrap_or(0)) / 100.0;
        step_area(body, axis, &t.samples, y, h, 1.0, w, PURPLE, 0.18);
        step_line(body, axis, &t.samples, y, h, 1.0, w, PURPLE, 2.2, None);
        y += h + LANE_GAP;
    }
    y
}

/// Lane 5: scripted facts and endpoint flips as small marks.
fn events_lane(body: &mut String, axis: &Axis, t: &Timeline, y: f64) -> f64 {
    let h = 34.0;
    lane_frame(body, y, h, "Events", "scenario / endpoints");
    for r in &t.rows {
        let x = axis.x(r.at);
        match (r.source, r.kind) {
            (Source::Scenario, _) => {
                let _ = write!(
                    body,
                    r#"<path d="M{x:.1},{:.1} l4,5 l-4,5 l-4,-5 z" fill="{GREY}"><title>{}</title></path>"#,
                    y + 2.0,
                    esc(&format!("{} {}", wall_clock(r.at, t.offset), r.reason))
                );
            }
            (_, Some(ActionKind::EndpointDown)) => {
                let _ = write!(
                    body,
                    r#"<path d="M{:.1},{:.1} l7,0 l-3.5,7 z" fill="{RED}"><title>{}</title></path>"#,
                    x - 3.5,
                    y + 20.0,
                    esc(&format!(
                        "{} EndpointDown {}",
                        wall_clock(r.at, t.offset),
                        super::table::affected(r)
                    ))
                );
            }
            (_, Some(ActionKind::EndpointUp)) => {
                let _ = write!(
                    body,
                    r#"<path d="M{:.1},{:.1} l7,0 l-3.5,-7 z" fill="{GREEN}"><title>{}</title></path>"#,
                    x - 3.5,
                    y + 31.0,
                    esc(&format!(
                        "{} EndpointUp {}",
                        wall_clock(r.at, t.offset),
                        super::table::affected(r)
                    ))
                );
            }
            _ => {}
        }
    }
    y + h + 6.0
}

/// The time axis under the lanes, with a faint guide through them at every tick.
fn time_axis(body: &mut String, axis: &Axis, t: &Timeline, lanes_top: f64, y: f64) {
    let _ = write!(
        body,
        r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#333" stroke-width="1"/>"##,
        WIDTH - RIGHT
    );
    let tick = tick_step(t.end - t.start);
    let first = (t.start + t.offset.seconds() as Millis * 1000).div_euclid(tick) * tick
        - t.offset.seconds() as Millis * 1000;
    let mut at = first;
    while at <= t.end {
        if at >= t.start {
            let x = axis.x(at);
            let _ = write!(
                body,
                r##"<line x1="{x:.1}" y1="{lanes_top:.1}" x2="{x:.1}" y2="{y:.1}" stroke="#000" stroke-opacity="0.07"/><line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
                y + 5.0
            );
            let label = wall_clock(at, t.offset);
            // Minutes suffice unless ticks are closer than a minute.
            let label = if tick < 60_000 {
                &label
            } else {
                label.get(..5).unwrap_or(&label)
            };
            text(body, x, y + 18.0, label, "#333", "middle", 11.0, false);
        }
        at += tick;
    }
}

/// The labelled actions under the axis: guides through the lanes, ticks, the label texts, and
/// the picture's height once they are placed.
struct Labels {
    guides: String,
    ticks: String,
    placed: String,
    height: f64,
}

/// Places the labelled actions in staggered rows so they never overlap.
fn action_labels(axis: &Axis, t: &Timeline, lanes_top: f64, lanes_bottom: f64) -> Labels {
    // The time axis runs along the bottom of the lanes; the labels hang under it.
    let y = lanes_bottom;
    let labels: Vec<Label> = t.rows.iter().filter_map(|r| label_for(t, r)).collect();
    let rows_top = y + 36.0;
    let mut row_ends: Vec<f64> = Vec::new();
    let mut placed = String::new();
    // Ticks go in before any label text so a label's halo covers the ticks of later actions.
    let mut ticks = String::new();
    let mut omitted = 0usize;
    let mut guides = String::new();
    for l in &labels {
        let x = axis.x(l.at);
        let text_w = l.text.chars().count() as f64 * CHAR_W + 4.0;
        let right_room = WIDTH - RIGHT - x;
        let (x0, x1, anchor, tx) = if text_w + 6.0 <= right_room {
            (x, x + text_w + 6.0, "start", x + 3.0)
        } else {
            (x - text_w - 6.0, x, "end", x - 3.0)
        };
        let row = row_ends.iter().position(|&end| end < x0).or_else(|| {
            (row_ends.len() < MAX_LABEL_ROWS).then(|| {
                row_ends.push(f64::MIN);
                row_ends.len() - 1
            })
        });
        let _ = write!(
            guides,
            r#"<line x1="{x:.1}" y1="{lanes_top:.1}" x2="{x:.1}" y2="{lanes_bottom:.1}" stroke="{}" stroke-opacity="0.45" stroke-dasharray="3 3"/>"#,
            l.color
        );
        let Some(row) = row else {
            omitted += 1;
            continue;
        };
        row_ends[row] = x1;
        let ly = rows_top + row as f64 * LABEL_ROW;
        let _ = write!(
            ticks,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}" stroke-width="1.2"/><circle cx="{x:.1}" cy="{y:.1}" r="2.6" fill="{}"/>"#,
            ly - 3.0,
            l.color,
            l.color
        );
        // A white halo keeps a label legible where the ticks of later actions cross it.
        let _ = write!(
            placed,
            r##"<text x="{tx:.1}" y="{ly:.1}" fill="{}" font-size="11" text-anchor="{anchor}" stroke="#ffffff" stroke-width="3" paint-order="stroke">{}</text>"##,
            l.color,
            esc(&l.text)
        );
    }
    let rows_used = row_ends.len().max(1) as f64;
    let mut height = rows_top + rows_used * LABEL_ROW + 12.0;
    if omitted > 0 {
        small_text(
            &mut placed,
            LEFT,
            height,
            &format!("{omitted} more actions not labelled; see the table or JSON output"),
            GREY,
            "start",
        );
        height += 14.0;
    }
    height += 8.0;

    Labels {
        guides,
        ticks,
        placed,
        height,
    }
}

/// Title, subtitle and legend.
fn header(t: &Timeline) -> String {
    let mut head = String::new();
    text(
        &mut head,
        20.0,
        30.0,
        &format!("ingress-failover simulate — policy {}", t.policy_name),
        "#111",
        "start",
        18.0,
        true,
    );
    let subtitle = format!(
        "{}  ·  from {} for {}  ·  final phase {}  ·  {} operator actions",
        t.description.as_deref().unwrap_or("scenario"),
        wall_clock_full(t.start, t.offset),
        duration(t.end - t.start),
        t.summary.final_phase,
        t.summary.counts.iter().map(|(_, n)| n).sum::<u32>()
    );
    text(
        &mut head, 20.0, 50.0, &subtitle, "#444", "start", 12.0, false,
    );
    legend(&mut head, t, 20.0, 74.0);

    head
}

/// The SVG document: header, lanes, guides, ticks and labels, in painting order.
fn assemble(t: &Timeline, head: &str, body: &str, labels: &Labels) -> String {
    let Labels {
        guides,
        ticks,
        placed,
        height,
    } = labels;
    let mut svg =
        String::with_capacity(body.len() + guides.len() + ticks.len() + placed.len() + 2048);
    let _ = write!(
        svg,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="{FONT}">
<title>{}</title>
<desc>Health of each tier over time and the operator's actions, replayed by ingress-failover simulate.</desc>
<rect x="0" y="0" width="{WIDTH}" height="{height:.0}" fill="#ffffff"/>
"##,
        esc(&format!("ingress-failover simulate: {}", t.policy_name))
    );
    svg.push_str(head);
    svg.push('\n');
    svg.push_str(body);
    svg.push('\n');
    svg.push_str(guides);
    svg.push('\n');
    svg.push_str(ticks);
    svg.push_str(placed);
    svg.push_str("\n</svg>\n");
    svg
}

/// Policy-level actions get a labelled tick; endpoint flips, publish diffs and phase changes
/// are already visible in the lanes and would bury the labels.
fn label_for(t: &Timeline, r: &Row) -> Option<Label> {
    use crate::engine::Affected;
    let kind = r.kind?;
    let time = wall_clock(r.at, t.offset);
    let hm = time.get(..5).unwrap_or(&time);
    let (what, color) = match (kind, &r.affected) {
        (ActionKind::EmergencyActivate, Affected::Replicas { from, to }) => {
            (format!("emergency on ({from}→{to})"), PURPLE)
        }
        (ActionKind::EmergencyActivate, _) => ("emergency on".to_string(), PURPLE),
        (ActionKind::EmergencyRelease, _) => ("emergency released".to_string(), PURPLE),
        (ActionKind::EmergencyRampDown, _) => ("emergency weight ↓".to_string(), PURPLE),
        (ActionKind::EmergencyScaleDown, Affected::Replicas { from, to }) => {
            (format!("emergency scale-down ({from}→{to})"), PURPLE)
        }
        (ActionKind::EmergencyScaleDown, _) => ("emergency scale-down".to_string(), PURPLE),
        (ActionKind::IngressFailover, Affected::Ingress { to_class, .. }) => {
            (format!("failover → {to_class}"), BLUE)
        }
        (
            ActionKind::IngressFailback,
            Affected::Ingress {
                primary_weight_percent,
                ..
            },
        ) => (format!("failback {primary_weight_percent}%"), BLUE),
        (
            ActionKind::FailbackStep,
            Affected::Ingress {
                primary_weight_percent,
                ..
            },
        ) => (format!("failback {primary_weight_percent}%"), BLUE),
        (ActionKind::FailbackComplete, _) => ("failback 100%".to_string(), BLUE),
        (ActionKind::IngressFailover, _) => ("failover".to_string(), BLUE),
        (ActionKind::IngressFailback, _) => ("failback".to_string(), BLUE),
        (ActionKind::FailbackStep, _) => ("failback step".to_string(), BLUE),
        (ActionKind::PanicEntered, _) => ("fail-open panic".to_string(), ORANGE),
        (ActionKind::PanicExited, _) => ("panic over".to_string(), ORANGE),
        (ActionKind::LoadBalancerDown, _) => ("LB down".to_string(), RED),
        (ActionKind::LoadBalancerUp, _) => ("LB up".to_string(), GREEN),
        (ActionKind::FlapBudgetExhausted, _) => ("FROZEN: flap budget".to_string(), GREY),
        (ActionKind::Unfrozen, _) => ("unfrozen".to_string(), GREY),
        (ActionKind::OverrideApplied, _) => ("override".to_string(), GREY),
        (ActionKind::OverrideExpired, _) => ("override ended".to_string(), GREY),
        _ => return None,
    };
    Some(Label {
        at: r.at,
        text: format!("{hm} {what}"),
        color,
    })
}

fn legend(out: &mut String, t: &Timeline, x: f64, y: f64) {
    let mut items: Vec<(&str, &str, &str)> = vec![("line", GREEN, "primary healthy ratio")];
    if t.cfg.emergency.is_some() {
        items.push(("dash", RED, "thresholds"));
        items.push(("dash", PURPLE, "emergency desired"));
        items.push(("area", PURPLE, "emergency ready pods"));
        items.push(("line", PURPLE, "emergency serving"));
    }
    if t.has_ingress {
        items.push(("area", BLUE, "traffic on primary class"));
        items.push(("box", GREEN, "LB up"));
        items.push(("box", RED, "LB down"));
    }
    items.push(("box", ORANGE, "fail-open panic"));
    if t.samples
        .iter()
        .any(|s| s.phase == crate::api::Phase::Frozen)
    {
        items.push(("box", GREY, "frozen"));
    }
    let mut cx = x;
    for (shape, color, label) in items {
        match shape {
            "line" => {
                let _ = write!(
                    out,
                    r#"<line x1="{cx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2.4"/>"#,
                    y - 4.0,
                    cx + 18.0,
                    y - 4.0
                );
            }
            "dash" => {
                let _ = write!(
                    out,
                    r#"<line x1="{cx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.6" stroke-dasharray="5 3"/>"#,
                    y - 4.0,
                    cx + 18.0,
                    y - 4.0
                );
            }
            "area" => {
                let _ = write!(
                    out,
                    r#"<rect x="{cx:.1}" y="{:.1}" width="18" height="10" fill="{color}" fill-opacity="0.25" stroke="{color}"/>"#,
                    y - 9.0
                );
            }
            _ => {
                let _ = write!(
                    out,
                    r#"<rect x="{cx:.1}" y="{:.1}" width="18" height="10" fill="{color}" fill-opacity="0.8"/>"#,
                    y - 9.0
                );
            }
        }
        text(out, cx + 23.0, y, label, "#333", "start", 11.0, false);
        cx += 23.0 + label.chars().count() as f64 * CHAR_W + 18.0;
    }
}

fn lane_frame(out: &mut String, y: f64, h: f64, title: &str, unit: &str) {
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="#fafafa" stroke="#cccccc"/>"##,
        WIDTH - LEFT - RIGHT
    );
    text(out, LEFT - 44.0, y + 14.0, title, "#111", "end", 12.0, true);
    text(out, LEFT - 44.0, y + 29.0, unit, "#666", "end", 10.5, false);
}

fn percent_grid(out: &mut String, y: f64, h: f64) {
    for (v, label) in [(0.0, "0%"), (0.5, "50%"), (1.0, "100%")] {
        let gy = y + h - v * h;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#000" stroke-opacity="0.08"/>"##,
            WIDTH - RIGHT
        );
        text(out, LEFT - 6.0, gy + 4.0, label, "#666", "end", 10.0, false);
    }
}

fn count_grid(out: &mut String, y: f64, h: f64, top: f64) {
    let mid = (top / 2.0).round();
    let mut marks = vec![0.0, top];
    if mid > 0.0 && mid < top {
        marks.push(mid);
    }
    for v in marks {
        let gy = y + h - v / top * h;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#000" stroke-opacity="0.08"/>"##,
            WIDTH - RIGHT
        );
        text(
            out,
            LEFT - 6.0,
            gy + 4.0,
            &format!("{v}"),
            "#666",
            "end",
            10.0,
            false,
        );
    }
}

fn threshold(out: &mut String, y: f64, h: f64, v: f64, color: &str, label: &str) {
    let gy = y + h - v * h;
    let _ = write!(
        out,
        r#"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="{color}" stroke-width="1.3" stroke-dasharray="7 4"/>"#,
        WIDTH - RIGHT
    );
    text(
        out,
        WIDTH - RIGHT - 4.0,
        gy - 3.0,
        label,
        color,
        "end",
        10.0,
        false,
    );
}

/// Step-function path of `value` (scaled to `top`) across the samples.
fn step_points(
    axis: &Axis,
    samples: &[Sample],
    y: f64,
    h: f64,
    top: f64,
    value: impl Fn(&Sample) -> f64,
) -> String {
    let mut d = String::new();
    let vy = |s: &Sample| y + h - (value(s) / top).clamp(0.0, 1.0) * h;
    for (i, s) in samples.iter().enumerate() {
        let x = axis.x(s.at);
        if i == 0 {
            let _ = write!(d, "M{x:.1},{:.1}", vy(s));
        } else {
            let _ = write!(d, " H{x:.1} V{:.1}", vy(s));
        }
    }
    d
}

#[allow(clippy::too_many_arguments)]
fn step_line(
    out: &mut String,
    axis: &Axis,
    samples: &[Sample],
    y: f64,
    h: f64,
    top: f64,
    value: impl Fn(&Sample) -> f64,
    color: &str,
    width: f64,
    dash: Option<&str>,
) {
    if samples.is_empty() {
        return;
    }
    let d = step_points(axis, samples, y, h, top, value);
    let dash = dash
        .map(|d| format!(r#" stroke-dasharray="{d}""#))
        .unwrap_or_default();
    let _ = write!(
        out,
        r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{dash} stroke-linejoin="round"/>"#
    );
}

#[allow(clippy::too_many_arguments)]
fn step_area(
    out: &mut String,
    axis: &Axis,
    samples: &[Sample],
    y: f64,
    h: f64,
    top: f64,
    value: impl Fn(&Sample) -> f64,
    color: &str,
    opacity: f64,
) {
    let Some(first) = samples.first() else {
        return;
    };
    let d = step_points(axis, samples, y, h, top, value);
    let _ = write!(
        out,
        r#"<path d="{d} V{:.1} H{:.1} Z" fill="{color}" fill-opacity="{opacity}" stroke="none"/>"#,
        y + h,
        axis.x(first.at)
    );
}

/// Filled spans where `on` holds.
#[allow(clippy::too_many_arguments)]
fn band(
    out: &mut String,
    axis: &Axis,
    samples: &[Sample],
    y: f64,
    h: f64,
    on: impl Fn(&Sample) -> bool,
    color: &str,
    opacity: f64,
) {
    let mut since: Option<Millis> = None;
    let end = samples.last().map_or(axis.end, |s| s.at);
    let mut emit = |from: Millis, to: Millis| {
        let (x0, x1) = (axis.x(from), axis.x(to));
        let _ = write!(
            out,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{color}" fill-opacity="{opacity}"/>"#,
            (x1 - x0).max(1.0)
        );
    };
    for s in samples {
        match (since, on(s)) {
            (None, true) => since = Some(s.at),
            (Some(from), false) => {
                emit(from, s.at);
                since = None;
            }
            _ => {}
        }
    }
    if let Some(from) = since {
        emit(from, end);
    }
}

#[allow(clippy::too_many_arguments)]
fn text(
    out: &mut String,
    x: f64,
    y: f64,
    s: &str,
    color: &str,
    anchor: &str,
    size: f64,
    bold: bool,
) {
    let weight = if bold { r#" font-weight="bold""# } else { "" };
    let _ = write!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" fill="{color}" font-size="{size}" text-anchor="{anchor}"{weight}>{}</text>"#,
        esc(s)
    );
}

fn small_text(out: &mut String, x: f64, y: f64, s: &str, color: &str, anchor: &str) {
    text(out, x, y, s, color, anchor, 10.5, false);
}

/// A tick spacing giving roughly 6–14 labels over `span`.
fn tick_step(span: Millis) -> Millis {
    const MIN: Millis = 60_000;
    let candidates = [
        10_000,
        30_000,
        MIN,
        2 * MIN,
        5 * MIN,
        10 * MIN,
        15 * MIN,
        30 * MIN,
        60 * MIN,
        120 * MIN,
        180 * MIN,
        360 * MIN,
        720 * MIN,
    ];
    candidates
        .iter()
        .copied()
        .find(|&c| span / c <= 14)
        .unwrap_or(1440 * MIN)
}

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
