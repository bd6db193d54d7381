// The reports page's charts: each .chart element carries its table as JSON in data-table
// ([columns, rows]) and its column names, in the page's language, in data-col-N. Drawn with
// Apache ECharts (vendored); no inline script, as the console's Content-Security-Policy wants.
(function () {
  "use strict";
  var BLUE = "#1f6feb", GREEN = "#1a7f37", RED = "#c62828", AMBER = "#b26a00", GREY = "#8a96a3";
  var COLORS = {
    deposits_pickups: [BLUE, GREEN],
    dwell: [BLUE],
    occupancy: [BLUE],
    expiries_returns: [RED, AMBER, GREY],
    carriers: [BLUE, GREEN, RED],
  };
  // Which columns are drawn (index 0 is the category axis): occupancy draws parcels, not %.
  var DRAWN = { occupancy: [1], carriers: [1, 2, 3] };
  var charts = [];

  function draw(el) {
    var key = el.getAttribute("data-chart");
    var data = JSON.parse(el.getAttribute("data-table"));
    var columns = data[0], rows = data[1];
    var names = columns.map(function (_, i) { return el.getAttribute("data-col-" + i) || columns[i]; });
    var drawn = DRAWN[key] || columns.map(function (_, i) { return i; }).slice(1);
    var stacked = key === "expiries_returns";
    var series = drawn.map(function (i) {
      return {
        name: names[i],
        type: key === "occupancy" ? "line" : "bar",
        stack: stacked ? "all" : undefined,
        smooth: key === "occupancy",
        areaStyle: key === "occupancy" ? { opacity: 0.15 } : undefined,
        data: rows.map(function (row) { return row[i]; }),
      };
    });
    var chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption({
      color: COLORS[key] || [BLUE],
      animation: false,
      grid: { left: 48, right: 16, top: 36, bottom: 40 },
      // richText: the tooltip is drawn, not HTML with inline styles (the CSP forbids those)
      tooltip: { trigger: "axis", renderMode: "richText" },
      legend: { top: 0, data: series.map(function (s) { return s.name; }) },
      xAxis: { type: "category", data: rows.map(function (row) { return row[0]; }) },
      yAxis: { type: "value", minInterval: 1 },
      series: series,
    });
    charts.push(chart);
  }

  document.querySelectorAll(".chart[data-table]").forEach(draw);
  window.addEventListener("resize", function () {
    charts.forEach(function (chart) { chart.resize(); });
  });
})();
