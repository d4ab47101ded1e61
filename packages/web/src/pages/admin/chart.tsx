/** A small live line chart (uPlot): `series` share the x axis (epoch seconds); the chart follows its box's width. */
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#8ab4f8', '#f28b82', '#fdd663', '#81c995', '#c58af9', '#78d9ec'];

export function Chart({ title, x, series, unit }: { title: string; x: number[]; series: { label: string; values: (number | null)[] }[]; unit?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const labels = series.map((s) => s.label).join('|');
  useEffect(() => {
    const el = box.current!;
    const opts: uPlot.Options = {
      width: el.clientWidth || 320,
      height: 160,
      legend: { show: true },
      cursor: { show: true },
      axes: [
        { stroke: '#9aa0a6', grid: { stroke: '#2a2d31' } },
        { stroke: '#9aa0a6', grid: { stroke: '#2a2d31' }, size: 56, ...(unit ? { label: unit } : {}) },
      ],
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2 }))],
    };
    const p = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
    plot.current = p;
    const resize = new ResizeObserver(() => p.setSize({ width: el.clientWidth || 320, height: 160 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      p.destroy();
      plot.current = undefined;
    };
    // A new set of series makes a new chart; new values only update it.
  }, [labels, unit]);
  useEffect(() => {
    plot.current?.setData([x, ...series.map((s) => s.values)]);
  }, [x, series]);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title} chart`} />
    </figure>
  );
}
