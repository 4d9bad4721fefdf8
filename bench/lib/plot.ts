/**
 * Figures for the bench reports: a Vega-Lite spec compiled by vega-lite, rendered headless by
 * vega's View to SVG (no browser, no hand-written SVG), and the same picture as PNG by resvg.
 * Both files go next to the scenario's report.md in bench/results/<time>-<name>/.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';

/** One row of a figure's data: the fields its encodings name. */
export type Datum = Readonly<Record<string, string | number | null>>;

export interface Figure {
  /** File name without extension: `<name>.svg` and `<name>.png`. */
  readonly name: string;
  readonly title: string;
  readonly data: readonly Datum[];
  /** Everything but data and title: mark, encoding, layer, facet… */
  readonly spec: Omit<Record<string, unknown>, 'data'>;
  readonly width?: number;
  readonly height?: number;
}

export interface Written {
  readonly svg: string;
  readonly png: string;
}

/** Render one Vega-Lite figure; returns the two paths written. */
export async function writeFigure(directory: string, figure: Figure): Promise<Written> {
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: figure.title,
    width: figure.width ?? 640,
    height: figure.height ?? 280,
    background: 'white',
    data: { values: figure.data.map((datum) => ({ ...datum })) },
    ...figure.spec,
  } as TopLevelSpec;
  const compiled = vegaLite.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    const svgPath = path.join(directory, `${figure.name}.svg`);
    const pngPath = path.join(directory, `${figure.name}.png`);
    await writeFile(svgPath, svg);
    const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 1.5 }, font: { loadSystemFonts: true } }).render().asPng();
    await writeFile(pngPath, png);
    return { svg: svgPath, png: pngPath };
  } finally {
    view.finalize();
  }
}

/** A line per series over x (time, rate…): the most common figure here. */
export function lineChart(options: {
  readonly name: string;
  readonly title: string;
  readonly data: readonly Datum[];
  readonly x: { readonly field: string; readonly title: string; readonly scale?: Record<string, unknown> };
  readonly y: { readonly field: string; readonly title: string; readonly scale?: Record<string, unknown> };
  readonly series?: { readonly field: string; readonly title: string };
  /** A second row of panels: one per value of this field, each with its own y scale. */
  readonly row?: { readonly field: string; readonly title: string };
  readonly points?: boolean;
  readonly height?: number;
}): Figure {
  const encoding: Record<string, unknown> = {
    x: { field: options.x.field, type: 'quantitative', title: options.x.title, ...(options.x.scale ? { scale: options.x.scale } : {}) },
    y: { field: options.y.field, type: 'quantitative', title: options.y.title, ...(options.y.scale ? { scale: options.y.scale } : {}) },
    ...(options.series ? { color: { field: options.series.field, type: 'nominal', title: options.series.title, legend: { labelLimit: 360 } } } : {}),
  };
  const mark = { type: 'line', point: options.points ?? false, interpolate: 'linear' };
  if (options.row) {
    return {
      name: options.name,
      title: options.title,
      data: options.data,
      height: options.height ?? 160,
      spec: {
        facet: { row: { field: options.row.field, type: 'nominal', title: options.row.title } },
        resolve: { scale: { y: 'independent' } },
        spec: { width: 640, height: options.height ?? 160, mark, encoding },
      },
    };
  }
  return { name: options.name, title: options.title, data: options.data, ...(options.height ? { height: options.height } : {}), spec: { mark, encoding } };
}

/** Grouped bars: one bar per (category, series). */
export function barChart(options: {
  readonly name: string;
  readonly title: string;
  readonly data: readonly Datum[];
  readonly x: { readonly field: string; readonly title: string; readonly sort?: readonly string[] };
  readonly y: { readonly field: string; readonly title: string; readonly scale?: Record<string, unknown> };
  readonly series?: { readonly field: string; readonly title: string };
  /** One panel per value of this field. */
  readonly column?: { readonly field: string; readonly title: string };
}): Figure {
  const encoding: Record<string, unknown> = {
    x: { field: options.x.field, type: 'ordinal', title: options.x.title, axis: { labelAngle: -30, labelLimit: 320 }, ...(options.x.sort ? { sort: options.x.sort } : {}) },
    y: { field: options.y.field, type: 'quantitative', title: options.y.title, ...(options.y.scale ? { scale: options.y.scale } : {}) },
    ...(options.series ? { color: { field: options.series.field, type: 'nominal', title: options.series.title, legend: { labelLimit: 360 } }, xOffset: { field: options.series.field } } : {}),
  };
  if (options.column) {
    return {
      name: options.name,
      title: options.title,
      data: options.data,
      spec: {
        facet: { column: { field: options.column.field, type: 'nominal', title: options.column.title } },
        spec: { width: 180, height: 220, mark: 'bar', encoding },
      },
    };
  }
  return { name: options.name, title: options.title, data: options.data, spec: { mark: 'bar', encoding } };
}

/** "![title](file.svg)" lines for a report, with paths relative to the report. */
export function figureLinks(written: readonly Written[], titles: readonly string[]): string {
  return written.map((w, i) => `![${titles[i] ?? path.basename(w.svg)}](${path.basename(w.svg)})`).join('\n');
}
