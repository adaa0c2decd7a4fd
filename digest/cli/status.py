"""`digest status`: is a daemon running, what did each job do, and did each of the last seven days' edition go out."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import typer

from digest.cli.app import CliState, app


@app.command()
def status(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")
) -> None:
    """Show whether a daemon is active (and any standby), each job's next and last run, each source's health,
    the latest editions with their delivery tallies, and for each of the last 7 days whether the daily edition
    went out and, if not, why."""
    from digest.scheduler.status import status_report

    state: CliState = ctx.obj
    report = status_report(state.config, state.engine)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for line in describe(report, ZoneInfo(report["timezone"])):
        typer.echo(line)


def local(value: str | None, tz: ZoneInfo) -> str:
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else "-"


def describe(report: dict, tz: ZoneInfo) -> list[str]:
    """The report as text, times in the digest's timezone."""
    daemon = report["daemon"]
    lines = [f"Times in {report['timezone']}.", "", "Daemon:"]
    if daemon["active"]:
        active = daemon["active"]
        lines.append(f"  active: {active['holder']} (pid {active['pid']} on {active['host']}) since "
                     f"{local(active['since'], tz)}, lease until {local(active['expires_at'], tz)}")
    else:
        lapsed = daemon["lapsed"]
        note = f" (the last one, {lapsed['holder']}, stopped renewing at {local(lapsed['expired_at'], tz)})" if lapsed else ""
        lines.append(f"  none active{note}: start one with `digest run`")
    for standby in daemon["standby"]:
        lines.append(f"  standby: {standby['id']} (pid {standby['pid']} on {standby['host']}) since "
                     f"{local(standby['since'], tz)}")
    lines += ["", "Jobs:"]
    for job in report["jobs"]:
        last = job["last_run"]
        done = "never run" if last is None else (
            f"last {local(last['started_at'], tz)} {last['outcome']}"
            + "".join(f", {name.replace('_', ' ')} {value}" for name, value in last["counts"].items())
            + (f": {last['detail']}" if last["detail"] else ""))
        lines.append(f"  {job['job']:<10} {job['schedule']:<34} next {local(job['next_run'], tz):<16}  {done}")
    lines += ["", "Sources:"]
    for source in report["sources"]:
        health = "disabled" if not source["enabled"] else (
            f"failing {source['failures_in_a_row']} in a row ({source['last_error']})"
            if source["failures_in_a_row"] else "ok")
        backoff = f", backing off until {local(source['backing_off_until'], tz)}" if source["backing_off_until"] else ""
        lines.append(f"  {source['name']:<20} {health}{backoff}; last success {local(source['last_success'], tz)}")
    lines += ["", "Latest editions:"]
    for edition in report["editions"]:
        tally = ", ".join(f"{status} {count}" for status, count in sorted(edition["deliveries"].items())) or "no messages"
        lines.append(f"  #{edition['id']:<4} {edition['period']:<6} {edition['start_date']}  {edition['status']:<5} "
                     f"{edition['papers']} papers; {tally}")
    lines += ["", "Daily edition, last 7 days:"]
    for day in report["days"]:
        mark = "sent" if day["went_out"] else "NOT SENT"
        lines.append(f"  {day['weekday'][:3]} {day['date']}  {mark:<8}  {day['story']}")
    return lines
