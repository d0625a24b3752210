// report.html's charts (carrental.report_html embeds this after Chart.js). The numbers come from
// the JSON block #report-data; the colours from report.css (--series-N), so tables and charts
// agree. No animation: the page is a document, and a screenshot must show the final state.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const css = getComputedStyle(document.documentElement);
  const series = (i) => css.getPropertyValue("--series-" + i).trim();
  const accent = css.getPropertyValue("--accent").trim();
  const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const whole = new Intl.NumberFormat("en-US");
  const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

  Chart.defaults.animation = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = css.getPropertyValue("--muted").trim();
  Chart.defaults.maintainAspectRatio = false;

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (canvas) {
      new Chart(canvas, config);
    }
  }

  const locations = data.locations;
  const locationsBox = document.querySelector(".chart.locations");
  if (locationsBox) {
    locationsBox.style.height = 60 + 30 * locations.labels.length + "px";
  }
  draw("chart-locations", {
    type: "bar",
    data: {
      labels: locations.labels,
      datasets: [{ label: "Revenue", data: locations.revenue, backgroundColor: accent, borderRadius: 3 }],
    },
    options: {
      indexAxis: "y",
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (ctx) =>
              " " + money.format(ctx.parsed.x) + " from " + whole.format(locations.rentals[ctx.dataIndex]) + " rentals",
          },
        },
      },
      scales: {
        x: { beginAtZero: true, ticks: { callback: (value) => compact.format(value) } },
        y: { grid: { display: false }, ticks: { autoSkip: false, color: css.getPropertyValue("--ink").trim() } },
      },
    },
  });

  const types = data.vehicleTypes;
  const typeColours = types.colours.map(series);
  for (const [id, values, format] of [
    ["chart-mix-revenue", types.revenue, money],
    ["chart-mix-rentals", types.rentals, whole],
  ]) {
    const total = values.reduce((sum, value) => sum + value, 0);
    draw(id, {
      type: "doughnut",
      data: {
        labels: types.labels,
        datasets: [{ data: values, backgroundColor: typeColours, borderColor: "#fff", borderWidth: 2 }],
      },
      options: {
        cutout: "58%",
        plugins: {
          legend: { display: false }, // the table beside the charts names the colours
          tooltip: {
            callbacks: {
              label: (ctx) =>
                " " + format.format(ctx.parsed) + " (" + ((100 * ctx.parsed) / total).toFixed(1) + " %)",
            },
          },
        },
      },
    });
  }

  const daily = data.daily;
  draw("chart-daily", {
    type: "bar",
    data: {
      labels: daily.dates,
      datasets: [
        {
          type: "line",
          label: daily.averageDays + "-day average",
          data: daily.average,
          borderColor: accent,
          backgroundColor: accent,
          borderWidth: 2.5,
          pointRadius: 0,
          tension: 0.3,
          spanGaps: false,
          order: 0,
        },
        {
          label: "Revenue of the day",
          data: daily.revenue,
          backgroundColor: css.getPropertyValue("--volume").trim(),
          order: 1,
        },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { position: "top", align: "end", labels: { boxWidth: 12 } },
        tooltip: {
          callbacks: {
            label: (ctx) => (ctx.parsed.y === null ? null : " " + ctx.dataset.label + ": " + money.format(ctx.parsed.y)),
            footer: (items) => whole.format(daily.rentals[items[0].dataIndex]) + " rentals",
          },
        },
      },
      scales: {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 18 } },
        y: { beginAtZero: true, ticks: { callback: (value) => compact.format(value) } },
      },
    },
  });
})();
