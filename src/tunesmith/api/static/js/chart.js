// Line charts on uPlot (vendored, MIT): curves that grow while a job runs.
import uPlot from "/ui/vendor/uplot/uPlot.esm.js";

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];

/** A chart in `el` of series named `names` against x (`xLabel`); `update(rows)` redraws it.
 * `rows` are objects; each series reads its own key, missing values leave gaps. */
export function lineChart(el, { title, xLabel = "step", names, height = 240 }) {
  const series = [
    { label: xLabel },
    ...names.map((name, i) => ({
      label: name,
      stroke: COLORS[i % COLORS.length],
      width: 2,
      spanGaps: true,
      points: { show: true, size: 4 },
    })),
  ];
  const width = () => Math.max(280, el.clientWidth || 600);
  const plot = new uPlot(
    {
      title,
      width: width(),
      height,
      series,
      scales: { x: { time: false } },
      axes: [{ label: xLabel }, {}],
    },
    [[], ...names.map(() => [])],
    el,
  );
  const resize = new ResizeObserver(() => plot.setSize({ width: width(), height }));
  resize.observe(el);
  return {
    plot,
    update(rows) {
      const xs = rows.map((r) => r[xLabel]);
      plot.setData([xs, ...names.map((name) => rows.map((r) => r[name] ?? null))]);
    },
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}
