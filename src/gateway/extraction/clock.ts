import type { ResolvedHours } from './config.ts';

const QUARTER_HOUR = 15 * 60_000;
const WEEKDAYS: Readonly<Record<string, number>> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

interface Anchor {
  readonly bucket: number;
  /** ISO weekday and minutes after local midnight at the start of the bucket. */
  readonly weekday: number;
  readonly minute: number;
}

/**
 * Local wall-clock time in configured time zones. Intl is slow per call, so the local time is computed once
 * per zone and quarter hour: every UTC offset in the tz database is a multiple of 15 minutes and every
 * transition falls on a quarter hour, so within one quarter-hour bucket the offset is constant.
 */
export class BusinessClock {
  readonly #hours: ResolvedHours;
  readonly #formats = new Map<string, Intl.DateTimeFormat>();
  readonly #anchors = new Map<string, Anchor>();

  constructor(hours: ResolvedHours) {
    this.#hours = hours;
  }

  #local(at: number, zone: string): { weekday: number; minute: number } {
    const bucket = Math.floor(at / QUARTER_HOUR);
    let anchor = this.#anchors.get(zone);
    if (anchor?.bucket !== bucket) {
      let format = this.#formats.get(zone);
      if (format === undefined) {
        format = new Intl.DateTimeFormat('en-US', {
          timeZone: zone,
          weekday: 'short',
          hour: '2-digit',
          minute: '2-digit',
          hourCycle: 'h23',
        });
        this.#formats.set(zone, format);
      }
      let weekday = 1;
      let hour = 0;
      let minute = 0;
      for (const part of format.formatToParts(bucket * QUARTER_HOUR)) {
        if (part.type === 'weekday') weekday = WEEKDAYS[part.value] ?? 1;
        else if (part.type === 'hour') hour = Number(part.value);
        else if (part.type === 'minute') minute = Number(part.value);
      }
      anchor = { bucket, weekday, minute: hour * 60 + minute };
      this.#anchors.set(zone, anchor);
    }
    // The bucket never crosses local midnight: local midnight is a quarter-hour instant in every zone.
    return {
      weekday: anchor.weekday,
      minute: anchor.minute + Math.floor((at - bucket * QUARTER_HOUR) / 60_000),
    };
  }

  /** Whether `at` falls outside the business hours of the organisation's (or the default) time zone. */
  isOffHours(at: number, organisation: string | undefined): boolean {
    const h = this.#hours;
    const zone =
      (organisation === undefined ? undefined : h.organisationTimeZones.get(organisation)) ?? h.timeZone;
    const { weekday, minute } = this.#local(at, zone);
    if (h.start < h.end) return !h.days.has(weekday) || minute < h.start || minute >= h.end;
    // A shift across midnight belongs to the day it starts on.
    if (minute >= h.start) return !h.days.has(weekday);
    if (minute < h.end) return !h.days.has(weekday === 1 ? 7 : weekday - 1);
    return true;
  }
}
